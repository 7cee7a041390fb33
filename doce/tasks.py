from celery import shared_task


@shared_task(name="doce.ping", acks_late=False, ignore_result=False)
def ping() -> str:
    """Round-trip probe for /healthz: proves a worker takes tasks from the broker."""
    return "pong"
