"""The benchmarks are not CI: pytest collects nothing here (run them with make bench)."""

collect_ignore_glob = ["*"]
