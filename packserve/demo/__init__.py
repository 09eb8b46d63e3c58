"""The `vision_stack` demo: real pretrained vision models packed into one served pipeline."""
