import os

# Tests never download from a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Subprocesses the tests start (torchrun workers, CLI runs) inherit one OpenMP thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """One torch thread for every test: tiny models gain nothing from threads, and on a small
    shared CPU oversubscribed OpenMP threads spin (measured ~10x slower under load)."""
    import torch

    torch.set_num_threads(1)
