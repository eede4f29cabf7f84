"""BUILD matches the code: every module and test has a target, and each target's deps are what its srcs import.

BUILD is Starlark written in the Python subset, so `ast` reads it; the sources are read with `ast` too, and
nothing is imported. What a source "uses" is every module of the project Python runs for its imports (parent
packages included, lazy imports inside functions too), every module it runs with `python -m` (a string
constant naming the module), and, for a test, tests/conftest.py, which pytest loads. Its target's deps must be
exactly the targets owning those files, other than itself.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "drnas_tf"
TEST_MAIN = "tests/pytest_main.py"
CONFTEST = "tests/conftest.py"
# Where a top-level import is looked for: the workspace, and tests/ (pytest puts the conftest's folder on sys.path).
IMPORT_ROOTS = ("", "tests")
SIZES = ("small", "medium", "large", "enormous")
PY_RULES = ("py_library", "py_binary", "py_test")


def read_targets():
    """Returns {name: {"rule": ..., attribute: value}} for BUILD's py_* rules (literal attributes only)."""
    targets = {}
    for statement in ast.parse((ROOT / "BUILD").read_text(), "BUILD").body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in PY_RULES):
            continue
        target = {"rule": call.func.id}
        for keyword in call.keywords:
            try:
                target[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:  # glob() and other calls: evaluated by Bazel, not compared here
                target[keyword.arg] = None
        targets[target["name"]] = target
    return targets


def module_files(dotted_name):
    """The project's files Python runs to import `dotted_name` (parent packages first); none if not ours."""
    parts = dotted_name.split(".")
    for import_root in IMPORT_ROOTS:
        base = ROOT / import_root
        files = []
        for depth in range(1, len(parts) + 1):
            path = base.joinpath(*parts[:depth])
            if (path / "__init__.py").is_file():
                files.append(path / "__init__.py")
            elif path.with_suffix(".py").is_file():
                files.append(path.with_suffix(".py"))
            else:
                break
        if files:
            return [file.relative_to(ROOT).as_posix() for file in files]
    return []


def used_files(source):
    """The project's files that `source` (a path relative to ROOT) imports or runs with `python -m`."""
    tree = ast.parse((ROOT / source).read_text(), source)
    package = pathlib.PurePosixPath(source).parent.parts
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] if node.level else ())
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # submodules; others resolve to none
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(PACKAGE + ".") and node.value.replace(".", "").replace("_", "").isalnum():
                names.add(node.value)
    return {file for name in names for file in module_files(name)}


def owners(targets):
    """{file: target name} for the srcs of libraries and binaries (tests own nothing others may use)."""
    owner = {}
    for name, target in targets.items():
        if target["rule"] == "py_test":
            continue
        for source in target.get("srcs", []):
            assert source not in owner, f"{source} is in the srcs of both :{owner[source]} and :{name}"
            owner[source] = name
    return owner


TARGETS = read_targets()
OWNERS = owners(TARGETS)


def test_every_package_module_is_in_one_target():
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*.py")}
    missing = sorted(modules - set(OWNERS))
    assert not missing, f"add these to a py_library's or py_binary's srcs in BUILD: {missing}"
    stale = sorted(source for source in OWNERS if not (ROOT / source).is_file())
    assert not stale, f"BUILD lists files that do not exist: {stale}"


def test_every_test_module_has_a_py_test_running_it_with_a_size():
    test_modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "tests").rglob("test_*.py"))
    runs = {}
    for name, target in TARGETS.items():
        if target["rule"] != "py_test":
            continue
        assert target.get("size") in SIZES, f":{name} needs a size, one of {SIZES}"
        assert target.get("main") == TEST_MAIN, f":{name} must have main = {TEST_MAIN!r}"
        (test_module,) = set(target["srcs"]) - {TEST_MAIN}
        assert target.get("args") == [f"$(location {test_module})"], f":{name} must pass {test_module} to pytest"
        # Bazel would otherwise add tests/__init__.py, making pytest put the workspace on sys.path instead of tests/.
        assert target.get("legacy_create_init") is False, f":{name} needs legacy_create_init = False"
        runs[test_module] = name
    assert sorted(runs) == test_modules


@pytest.mark.parametrize("name", sorted(name for name in TARGETS if TARGETS[name]["rule"] == "py_binary"))
def test_each_binary_runs_its_entry_point(name):
    main = TARGETS[name]["main"]
    assert main == f"{PACKAGE}/{name}.py" and TARGETS[name]["srcs"] == [main]
    assert 'if __name__ == "__main__":' in (ROOT / main).read_text()


def test_every_entry_point_has_a_binary():
    entry_points = {path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*.py")
                    if 'if __name__ == "__main__":' in path.read_text()}
    binaries = {target["main"] for target in TARGETS.values() if target["rule"] == "py_binary"}
    missing = sorted(entry_points - binaries)
    assert not missing, f"give each a py_binary named after it, with main and srcs = [the file]: {missing}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_deps_are_the_targets_the_sources_use(name):
    target = TARGETS[name]
    sources = set(target.get("srcs", []))
    used = set().union(*(used_files(source) for source in sources))
    if target["rule"] == "py_test":
        used.add(CONFTEST)
    used -= sources
    unowned = sorted(file for file in used if file not in OWNERS)
    assert not unowned, f":{name} uses {unowned}, which no py_library or py_binary in BUILD lists in srcs"
    expected = sorted(f":{OWNERS[file]}" for file in used)
    assert sorted(target.get("deps", [])) == sorted(set(expected)), f":{name} deps must be {sorted(set(expected))}"
