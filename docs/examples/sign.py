"""Sign one event for curl: ``python sign.py SECRET PROJECT_ID TIMESTAMP < event.json``.

Prints ``v2=<hex>``: HMAC-SHA256 over the RFC 8785 form of the event with ``project_id`` and the
integer ``timestamp`` bound in (docs/api.md, "Event signatures"). Needs ``pip install rfc8785``.
"""

import hashlib
import hmac
import json
import sys

import rfc8785

secret, project_id, timestamp = sys.argv[1], sys.argv[2], int(sys.argv[3])
event = json.load(sys.stdin)
event.pop("signature", None)
event["project_id"], event["timestamp"] = project_id, timestamp
print("v2=" + hmac.new(secret.encode(), rfc8785.dumps(event), hashlib.sha256).hexdigest())
