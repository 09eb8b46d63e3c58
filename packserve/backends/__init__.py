"""Backends: tensors in, tensors out. They know nothing of queues, batching policy or protocols."""
