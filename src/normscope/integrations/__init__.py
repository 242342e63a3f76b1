"""Measures during training in the frameworks people train with.

- :mod:`normscope.integrations.lightning`: a ``lightning.pytorch.Callback``;
- :mod:`normscope.integrations.huggingface`: a ``transformers.TrainerCallback``.

Both run a :class:`~normscope.train.Tracker` on fixed probe batches every ``k``
optimizer steps or at the end of every ``k``-th epoch, warm-started as the Tracker is,
and write what it records through the trainer's own loggers (TensorBoard, W&B, CSV...).
They never change the training: the model's parameters, buffers, gradients and modes,
the optimizer and every global random stream are as they would be without them. Neither
module is imported by ``import normscope``; each needs its framework installed.
"""
