"""A stand-in for PaddlePaddle's package, only as deep as ``python -m paddle.distributed.launch`` needs.

An image map puts ``stubs/`` on ``PYTHONPATH`` for the Paddle images of the upstream examples, so their
unchanged command (``python -m paddle.distributed.launch run_check``) runs ``rendezvous_check.py``,
which checks the PaddleJob environment (PADDLE_MASTER, PADDLE_NNODES, PADDLE_JOB_ID) and that every
node reaches the master. Not PaddlePaddle: nothing else is here.
"""
