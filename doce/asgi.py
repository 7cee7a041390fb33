"""The ASGI application: what uvicorn serves (``make run``, the production image).

ASGI lets a page hold a stream open (the live transcript, ``projects.stream``) without
holding a thread. Static files come through WhiteNoise's middleware, from the finders
in DEBUG, as under WSGI; ``doce.wsgi`` stays for WSGI servers and the test server.
"""

import os
import warnings

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "doce.settings")
# WhiteNoise 6 answers a static file with a file iterator, which Django's ASGI handler
# reads in a thread (fine for a few small files) and would warn about every time.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)
application = get_asgi_application()
