"""Client errors: each becomes a 4xx JSON body, never a traceback."""
import json
from http import HTTPStatus


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str:
        return HTTPStatus(self.status).phrase


def error_body(status: int, message: str) -> str:
    return json.dumps({"error": message, "status": status})
