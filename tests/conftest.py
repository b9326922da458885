import os

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The tensors in these tests are small: one thread avoids oversubscribing the 2-core CI machine,
# where a second thread made small ops 10-30x slower under load.
import torch  # noqa: E402

torch.set_num_threads(1)
