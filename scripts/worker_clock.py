"""Bench-only (scripts/bench_serve.py --split): a clock inside the serving image's model workers.

bench_serve mounts this file into the image's site-packages with a .pth line that imports it, so it
runs in every Python process there; it does something only where BYOC_BENCH_CLOCK_DIR is set and
MMS's Python worker is importable. It then wraps two of MMS's functions so that each worker writes
one line per prediction message to its own file: when the message had been read off the socket from
the frontend, and when its answer was ready to send back. Containers share the host's monotonic
clock (time.perf_counter), so the bench can set these against when its client sent the request and
when the answer arrived: the trip to the worker, the time in it, the trip back.
"""
import os
import time

CLOCK_DIR = os.environ.get("BYOC_BENCH_CLOCK_DIR")


def _install(directory: str) -> None:
    from mms import service
    from mms.protocol import otf_message_handler

    lines = open(os.path.join(directory, f"worker-{os.getpid()}.txt"), "a", buffering=1)
    read_message, predict = otf_message_handler.retrieve_msg, service.Service.predict
    received = [0.0]

    def timed_read(connection):
        message = read_message(connection)
        received[0] = time.perf_counter()
        return message

    def timed_predict(self, batch):
        answer = predict(self, batch)
        lines.write(f"{received[0]:.6f} {time.perf_counter():.6f}\n")
        return answer

    # model_service_worker imports retrieve_msg by name after this runs (.pth files load first).
    otf_message_handler.retrieve_msg = timed_read
    service.Service.predict = timed_predict


if CLOCK_DIR:
    try:
        _install(CLOCK_DIR)
    except ImportError:  # not the serving image's venv
        pass
