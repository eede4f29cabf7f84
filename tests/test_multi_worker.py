"""`python -m drnas_tf.search` on a two-worker MultiWorkerMirroredStrategy cluster on loopback.

TF's gRPC server listens on every interface whatever TF_CONFIG says (docs/method.md §15), so the workers run inside a
network namespace of their own that has only the loopback device: a holder process made by
`unshare --net` keeps it, and each worker enters it with `nsenter`. The tests skip where that is not
permitted (it needs root or user namespaces).

Both workers end with bit-identical architecture parameters, weights and optimizer states (the run checks it
after every epoch, across the workers, and fails otherwise; a test makes them diverge to see it fail), the
chief's genotype equals that of one process with two replicas, the same global batch and the same seeds, and
a cluster restarted after a worker was killed resumes from the last checkpoint and ends as an
uninterrupted run.
"""

import glob
import json
import os
import signal
import subprocess
import time

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from cli_harness import ENV, ROOT, module_command
from drnas_tf import config as config_lib, runtime, search_task
from drnas_tf.config import Execution
from drnas_tf.data.pipelines import search_datasets, search_parts

SETTINGS = dict(init_channels=8, cells_per_stage=1, ks=(2, 1), num_keeps=(5, 3), stage_epochs=(1, 1),
                arch_warmup_epochs=0, steps_per_epoch=3)
SEARCH_FLAGS = ["--search_space=nb201", "--dataset=digits", "--init_channels=8", "--cells_per_stage=1",
                "--ks=2,1", "--num_keeps=5,3", "--stage_epochs=1,1", "--arch_warmup_epochs=0",
                "--steps_per_epoch=3", "--checkpoint_every_steps=1", "--trajectory_samples=0", "--progress=0",
                "--deterministic", "--strategy=multi_worker"]
PORTS = (23456, 23457)  # free in a namespace of our own
TIMEOUT = 300


def _namespace_holder():
    """A process holding a new network namespace with loopback up; None where namespaces are not permitted."""
    try:
        probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
                              stdout=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "up":
        holder.kill()
        holder.wait()
        return None
    return holder


@pytest.fixture(scope="module")
def namespace():
    holder = _namespace_holder()
    if holder is None:
        pytest.skip("needs a loopback-only network namespace (`unshare --net` and `ip`, as root or with user "
                    "namespaces): TF's gRPC server would otherwise listen on every interface")
    yield f"/proc/{holder.pid}/ns/net"
    holder.kill()
    holder.wait()


class Cluster:
    """Two search workers (worker 0 is the chief) in `namespace`, writing logs and temporary files under `root`."""

    def __init__(self, namespace, root, model_dir, extra_flags=((), ())):
        self.logs = [os.path.join(root, f"worker{index}.log") for index in range(2)]
        self.temp_dir = os.path.join(root, "tmp")
        os.makedirs(self.temp_dir)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in PORTS]}
        self.processes = []
        for index in (1, 0):
            env = {**ENV, "TMPDIR": self.temp_dir,
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            command = ["nsenter", f"--net={namespace}"] + module_command(
                "drnas_tf.search", *SEARCH_FLAGS, f"--model_dir={model_dir}", *extra_flags[index])
            with open(self.logs[index], "w") as log:
                self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                                       stderr=subprocess.STDOUT))
        self.processes.reverse()  # [worker 0, worker 1]

    def wait(self, timeout=TIMEOUT):
        """Waits for both workers; returns their exit codes (kills the cluster after `timeout` s)."""
        deadline = time.monotonic() + timeout
        try:
            return [process.wait(timeout=max(deadline - time.monotonic(), 0.1)) for process in self.processes]
        finally:
            self.kill()

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def log(self, index):
        return open(self.logs[index]).read()[-3000:]


def run_cluster(namespace, root, model_dir, extra_flags=((), ())):
    cluster = Cluster(namespace, root, model_dir, extra_flags)
    codes = cluster.wait()
    assert codes == [0, 0], f"worker 0:\n{cluster.log(0)}\nworker 1:\n{cluster.log(1)}"
    assert not glob.glob(os.path.join(cluster.temp_dir, "drnas_*"))  # worker 1 removed its temporary directory
    return json.load(open(os.path.join(model_dir, "genotype.json")))


def saved_state(model_dir):
    try:
        return json.load(open(os.path.join(model_dir, "state.json")))
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def two_workers(namespace, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    model_dir = str(root / "run")
    return run_cluster(namespace, str(root), model_dir), model_dir


def one_process_two_replicas(model_dir):
    """The same search in this process under MirroredStrategy over two logical CPUs (tests/conftest.py), its
    data made as drnas_tf/search.py makes it; returns the genotype record."""
    config = config_lib.search_config("nb201", "digits", **SETTINGS)
    parts = search_parts("digits", train_portion=config.data.train_portion)

    def epoch_data(epoch):
        dataset, steps, _ = search_datasets("digits", config.schedule.batch_size,
                                            train_portion=config.data.train_portion, seed=config.seed * 1000 + epoch,
                                            split_seed=config.seed, parts=parts)
        return dataset, min(steps, config.schedule.steps_per_epoch)

    # Reduction through one device, as tests/test_optim.py: a second collective-ops MirroredStrategy in one pytest
    # process can reuse collective instance keys and abort; a sum of two replicas is the same either way.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    tf.config.experimental.enable_op_determinism()  # as the workers' --deterministic: the same kernels
    runtime.configure_graph_optimization("auto")  # as the workers' default: the same optimised graph
    try:
        search_task.run_search(config, model_dir, epoch_data, strategy=strategy, execution=Execution(progress=0))
    finally:
        tf_config.disable_op_determinism()  # process-wide: leave the other tests' kernels alone
        runtime.configure_graph_optimization("full")
    return json.load(open(os.path.join(model_dir, "genotype.json")))


@pytest.mark.slow
def test_two_workers_stay_identical_and_match_one_process_with_two_replicas(two_workers, tmp_path):
    chief, model_dir = two_workers
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "flags.txt", "genotype.json", "genotype.txt",
                                             "genotypes", "state.json", "tensorboard"]
    assert saved_state(model_dir)["epoch"] == 2
    reference = one_process_two_replicas(str(tmp_path / "one_process"))
    assert chief["text"] == reference["text"]
    assert chief["arch_parameters"] == reference["arch_parameters"]  # exact: the same kernels and sums


@pytest.mark.slow
def test_workers_that_drift_apart_stop_with_an_error(namespace, tmp_path):
    cluster = Cluster(namespace, str(tmp_path), str(tmp_path / "run"), ((), ("--learning_rate=0.5",)))
    codes = cluster.wait()
    assert codes == [2, 2], f"worker 0:\n{cluster.log(0)}\nworker 1:\n{cluster.log(1)}"
    assert "the workers disagree on the architecture parameters, weights and optimizer states after epoch 1" \
        in cluster.log(0)


@pytest.mark.slow
def test_restarting_the_cluster_after_a_worker_is_killed_resumes(namespace, two_workers, tmp_path):
    uninterrupted, _ = two_workers
    model_dir = str(tmp_path / "run")
    cluster = Cluster(namespace, str(tmp_path / "killed"), model_dir)
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:  # kill worker 1 once the chief has saved step 2 of the first epoch
            state = saved_state(model_dir)
            if state and (state["epoch"], state["step"]) >= (0, 2):
                cluster.processes[1].send_signal(signal.SIGKILL)
                break
            assert all(process.poll() is None for process in cluster.processes), cluster.log(0)
            assert time.monotonic() < deadline, "the kill point was not reached"
            time.sleep(0.01)
    finally:
        cluster.kill()  # the chief cannot go on alone: restarting means restarting every worker
    killed_at = saved_state(model_dir)
    assert killed_at["epoch"] < 2  # it really stopped early
    resumed = run_cluster(namespace, str(tmp_path / "restarted"), model_dir)
    assert resumed["text"] == uninterrupted["text"]
    assert resumed["arch_parameters"] == uninterrupted["arch_parameters"]  # exact: --deterministic
