"""The local stack: the whole serverless system on one machine, no AWS account, no Docker.

Not part of any Lambda zip (functions/Makefile packages only each handler's folder and
functions/common). `inktex up` starts it; see docs/local-stack.md.
"""
