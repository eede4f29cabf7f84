"""Fields a search run adds beside the genotype in its genotype.json files; genotype parsers skip them."""

RUN_FIELDS = frozenset({"text", "epoch", "stage", "k", "arch_parameters", "masks", "relaxation", "arch_steps",
                        "benchmark", "trajectory"})
