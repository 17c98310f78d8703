"""The exported model: what a training run ships and what production loads.

    schema.py    formats, reserved names and the ExportBundle contract (light: serving imports it)
    users.py     UserResolver: (user id, features) -> token bag and history, as training encodes them
    scan.py      the catalogue scan of model.ts: its precision, the fp16 GEMM, two-stage top-k
    runtime.py   Recommender, the module that becomes model.ts (strings in, strings out)
    pt2.py       the model.pt2 program (tensors in, tensors out), lookups.json and its reference client
    writer.py    export(): model.ts, model.pt2, lookups.json, metadata.json, written atomically;
                 export_checkpoint() for a Lightning checkpoint
    testing.py   random-weight exports of any size, for tests and benchmarks

Nothing is imported here, so ``rankers.artifact.schema`` stays cheap to import.
"""
