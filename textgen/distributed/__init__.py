"""Running textgen jobs beyond one process: ``ray_batch`` runs a batch of records on a Ray cluster
(Ray Data, one model per worker actor), with the contract of a local run: one output per record,
in input order (docs/scale.md)."""
