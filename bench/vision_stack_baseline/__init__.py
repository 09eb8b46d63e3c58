"""The two reference layouts the `vision_stack` benchmark compares the served pipeline with.

- `bare_loop`: every model of the pipeline run in-process, in a plain loop, no server at all.
- `per_model`: one `packserve serve` process per model, the client doing the glue itself.

Both run the same ensemble definition through `pipeline.PipelineExecutor`, so the work per image
(decode, preprocessing, every branch's models, post-processing, crops) is exactly the served one's.
"""
