"""The local stack: the whole serverless system on one machine, no AWS account, no Docker.

A development tool beside the product, not part of it: no Lambda zip carries it
(functions/Makefile packages only each handler's folder, functions/common and inktex/),
and no product module imports it. Its dependencies are the `local` extra. `inktex up`
starts it; see docs/local-stack.md.
"""
