"""A stand-in for SageMaker's runtime front end, in front of a serving container on loopback.

SageMaker receives `invoke_endpoint` at POST /endpoints/<name>/invocations and
passes the body to the endpoint's container at POST /invocations; a container
error comes back as HTTP 424 ModelError carrying the container's status and
message. This does the same for one named endpoint, so boto3's real
sagemaker-runtime client (endpoint_url pointed here) drives the real container.
It does not check SigV4 signatures. moto's sagemaker-runtime cannot stand in:
it answers with queued fake results and never calls a container.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from byoc.contract import CUSTOM_ATTRIBUTES_HEADER


def start(endpoint_name: str, container_url: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, content_type: str, headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != f"/endpoints/{endpoint_name}/invocations":
                name = self.path.split("/")[2] if self.path.startswith("/endpoints/") else self.path
                error = {"message": f"Endpoint {name} of account 123456789012 not found."}
                return self._send(400, json.dumps(error).encode(), "application/json",
                                  [("x-amzn-ErrorType", "ValidationError:")])
            forwarded = {"Content-Type": self.headers["Content-Type"], "Accept": self.headers.get("Accept", "*/*")}
            if self.headers.get(CUSTOM_ATTRIBUTES_HEADER):  # InvokeEndpoint's CustomAttributes
                forwarded[CUSTOM_ATTRIBUTES_HEADER] = self.headers[CUSTOM_ATTRIBUTES_HEADER]
            answer = requests.post(f"{container_url}/invocations", data=body, timeout=60, headers=forwarded)
            if answer.ok:
                return self._send(200, answer.content, answer.headers.get("Content-Type", "application/json"),
                                  [("x-Amzn-Invoked-Production-Variant", "AllTraffic")])
            kind = "CLIENT" if answer.status_code < 500 else "SERVER"
            error = {"ErrorCode": f"{kind}_ERROR_FROM_MODEL", "OriginalStatusCode": answer.status_code,
                     "OriginalMessage": answer.text,
                     "Message": f"Received {kind.lower()} error ({answer.status_code}) from primary with message "
                                f'"{answer.text}".'}
            self._send(424, json.dumps(error).encode(), "application/json", [("x-amzn-ErrorType", "ModelError:")])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
