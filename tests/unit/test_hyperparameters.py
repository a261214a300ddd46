import pytest

from byoc.training.errors import HyperparameterError
from byoc.training.hyperparameters import Hyperparameters, parse


def test_defaults_when_nothing_is_given():
    assert parse({}) == Hyperparameters()


def test_decoded_values_are_typed():
    hp = parse({"model": "small_cnn", "epochs": 4, "lr": 1, "batch_size": 32.0})
    assert (hp.epochs, hp.lr, hp.batch_size) == (4, 1.0, 32)
    assert isinstance(hp.lr, float) and isinstance(hp.batch_size, int)


@pytest.mark.parametrize(
    "raw, named, allowed",
    [
        ({"epochs": 0}, "epochs=0", ">= 1"),
        ({"lr": 0}, "lr=0", "> 0"),
        ({"lr": -0.1}, "lr=-0.1", "> 0"),
        ({"batch_size": 0}, "batch_size=0", ">= 1"),
        ({"epochs": "three"}, "epochs='three'", "an integer"),
        ({"epochs": 2.5}, "epochs=2.5", "an integer"),
        ({"epochs": True}, "epochs=True", "an integer"),
        ({"lr": [0.1]}, "lr=[0.1]", "a number"),
        ({"model": "resnet9000"}, "model='resnet9000'", "small_cnn"),
        ({"momentum": 1.0}, "momentum=1.0", "[0, 1)"),
    ],
)
def test_bad_values_name_the_parameter_and_what_is_allowed(raw, named, allowed):
    with pytest.raises(HyperparameterError) as error:
        parse(raw)
    assert named in str(error.value) and allowed in str(error.value)


def test_unknown_keys_are_listed_with_the_allowed_ones():
    with pytest.raises(HyperparameterError, match=r"Unknown hyperparameter\(s\) learning_rate\. Allowed: model, epochs"):
        parse({"learning_rate": 0.1})


def test_resize_smaller_than_crop_is_refused():
    with pytest.raises(HyperparameterError, match="resize_size=16 is smaller than image_size=28"):
        parse({"resize_size": 16, "image_size": 28})


def test_messages_are_one_paragraph():
    with pytest.raises(HyperparameterError) as error:
        parse({"epochs": "a\nb"})
    assert "\n" not in str(error.value)
