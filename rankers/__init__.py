"""rankers: pairwise-weighted neural ranking for product recommendations.

    rankers.model       the pure, scriptable model: tokenizer, towers, THE score module
    rankers.data        logs, sources, vocabularies, splits (index space)
    rankers.training    Lightning + Hydra: batches, sampler, LightningModule, evaluation, train(cfg)
    rankers.losses      pair losses, weightings, the objective (pure functions)
    rankers.metrics     ranking metrics (pure functions)
    rankers.retrieval   the C++ core's Python face (exact top-k, ranks, score offsets)
    rankers.artifact    the export: model.ts runtime, model.pt2 program, writer, schema
    rankers.serving     the HTTP service: hot swaps, worker processes, A/B, events
"""

__version__ = "0.2.0"
