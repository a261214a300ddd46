import pytest

from byoc.serving.errors import RequestError
from byoc.serving.request_options import check_accept, top_k


@pytest.mark.parametrize("accept", [None, "", "application/json", "*/*", "text/html, application/*;q=0.8",
                                    # as SDKs and SageMaker's services send it
                                    "application/json, */*", "application/json; charset=utf-8", "application/jsonl",
                                    "application/x-jsonlines", "APPLICATION/JSONLINES"])
def test_accept_that_allows_json_passes(accept):
    check_accept(accept)


def test_accept_without_json_is_406():
    with pytest.raises(RequestError) as error:
        check_accept("text/csv")
    assert error.value.status == 406


@pytest.mark.parametrize("attributes, k", [(None, 5), ("", 5), ("top_k=3", 3), ("a=b; top_k = 7", 7),
                                           ("top_k=500", 10), ("TOP_K=2", 2), ("trace=1&top_k=2", 2),
                                           ('top_k="4"', 4), ('{"top_k": 3}', 3), ('{"trace": "x", "top_k": "2"}', 2),
                                           ('{"trace": "x"}', 5), ("c000b4f9-df62-4c85-a0bf-7c525f9104a4", 5),
                                           ("{not json, top_k=6", 6), ('{"top_k": null}', 5),
                                           ('{"a": ' + "[" * 1000, 5)])
def test_top_k_from_custom_attributes_capped_at_the_classes(attributes, k):
    assert top_k(attributes, num_classes=10) == k


@pytest.mark.parametrize("attributes", ["top_k=0", "top_k=-1", "top_k=three", "top_k=", '{"top_k": 0}',
                                        '{"top_k": true}', '{"top_k": 2.5}'])
def test_bad_top_k_is_400(attributes):
    with pytest.raises(RequestError) as error:
        top_k(attributes, num_classes=10)
    assert error.value.status == 400 and "top_k" in error.value.message


@pytest.mark.parametrize("accept", ["application/json;q=0", "*/*;q=0", "application/*;q=0.0, text/html",
                                    "application/json; q=abc", "*/*;q=0, application/jsonlines;q=0, application/json;q=0"])
def test_accept_whose_q_values_refuse_json_is_406(accept):
    with pytest.raises(RequestError) as error:
        check_accept(accept)
    assert error.value.status == 406


@pytest.mark.parametrize("accept", ["*/*;q=0.1", "APPLICATION/JSON; Q=0.5", "application/json;q=0, */*",
                                    "text/html, application/jsonlines;q=0.2"])
def test_accept_that_still_allows_json_or_json_lines_passes(accept):
    check_accept(accept)
