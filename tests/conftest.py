import torch

# Two cores are shared by the whole suite; one intra-op thread keeps timings stable.
torch.set_num_threads(1)
