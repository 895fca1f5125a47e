"""moto's S3 server on 127.0.0.1, for the S3 tests and benchmarks (nothing leaves the machine)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator


@contextlib.contextmanager
def moto_server(buckets: tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """Start the server on a free loopback port, point the AWS environment at it, create the
    buckets; yields the environment (which child processes inherit) and restores it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            for bucket in buckets:
                s3fs.S3FileSystem().mkdir(bucket)
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
