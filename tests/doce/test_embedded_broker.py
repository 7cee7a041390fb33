"""The embedded broker never hands a consumer a half-written message."""

import os
import threading

from kombu import Connection

from doce import broker


def test_filesystem_urls_use_the_atomic_transport():
    from doce.celery import app

    with app.connection_for_write() as conn:
        if conn.transport_cls == "filesystem":
            assert isinstance(conn.transport, broker.Transport)
    assert Connection("filesystem://").transport_cls == "filesystem"
    assert type(Connection("filesystem://").transport) is broker.Transport


def test_a_fast_consumer_reads_only_whole_messages(tmp_path):
    folder = str(tmp_path)
    options = {
        "data_folder_in": folder,
        "data_folder_out": folder,
        "polling_interval": 0,
        "control_folder": str(tmp_path / "control"),
    }
    payload = {"body": "x" * 200_000}  # large enough that a torn read would show
    received, errors = [], []

    def consume():
        with Connection("filesystem://", transport_options=options) as conn:
            queue = conn.SimpleQueue("torture")
            while len(received) < 200:
                try:
                    received.append(queue.get(timeout=10).payload)
                except Exception as exc:  # noqa: BLE001 (a torn message would land here)
                    errors.append(exc)
                    return

    with Connection("filesystem://", transport_options=options) as conn:
        # Declared before the consumer starts: this test is about messages; declaring
        # the same queue from two threads at once races on kombu's exchange table.
        queue = conn.SimpleQueue("torture")
        consumer = threading.Thread(target=consume)
        consumer.start()
        for _ in range(200):
            queue.put(payload)
    consumer.join(timeout=60)
    assert errors == []
    assert len(received) == 200 and all(item == payload for item in received)
    assert not [name for name in os.listdir(folder) if name.startswith("tmp-")]
