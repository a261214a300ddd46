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


def answers_json(answer) -> str:
    """A prediction as JSON. A probability that is not a number (an .npy input of values like 3e38
    overflows the logits) has no JSON form: that input is the client's error, not the model's."""
    try:
        return json.dumps(answer, allow_nan=False)
    except ValueError:
        raise RequestError(400, "The model's answer to this input is not a number (NaN or infinity): its "
                                "values are far outside those of normalised images.") from None
