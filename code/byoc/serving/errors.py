"""Client errors: each becomes a 4xx JSON body, never a traceback."""


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str:
        return {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}.get(
            self.status, "Client Error"
        )
