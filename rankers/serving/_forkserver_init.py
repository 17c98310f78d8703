"""Imported last by the model workers' fork server (``worker._context``), never by the service.

``gc.freeze()`` moves everything imported so far (torch, the main script's FastAPI and
Hydra, ...) into the permanent generation. A forked child otherwise runs a full collection
early on that walks every inherited object and, writing to their headers, copies hundreds
of MB of shared pages: measured, ~1 s of CPU per new model process before our code starts,
taken from the requests being served during a swap.
"""
import gc

gc.freeze()
