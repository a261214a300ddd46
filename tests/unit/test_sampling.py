import albumentations as A
import numpy as np

from byoc.training.sampling import EpochSampler, SeededAugmentation


def test_an_epoch_is_a_pure_function_of_seed_and_epoch():
    sampler = EpochSampler(100, seed=7)
    sampler.set_epoch(3)
    first = list(sampler)
    sampler.set_epoch(4)
    other = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == first and first != other
    assert sorted(i for i, _ in first) == list(range(100))


def test_resuming_mid_epoch_continues_the_same_order():
    sampler = EpochSampler(100, seed=7)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start=64)
    assert list(sampler) == whole[64:] and len(sampler) == 36


def test_augmentation_depends_only_on_the_sample_seed():
    images = [(np.random.default_rng(i).integers(0, 255, (28, 28, 3), dtype=np.uint8), i) for i in range(3)]
    augment = SeededAugmentation(images, A.Compose([A.RandomCrop(20, 20), A.HorizontalFlip()]))
    a = augment[(1, 1234)][0]
    augment[(2, 99)]  # another sample in between changes nothing
    b = augment[(1, 1234)][0]
    c = augment[(1, 4321)][0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ranks_split_an_epoch_into_equal_disjoint_shares():
    whole = EpochSampler(103, seed=7)
    whole.set_epoch(2)
    order = [i for i, _ in whole]
    shares = []
    for rank in range(3):
        sampler = EpochSampler(103, seed=7, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shares.append([i for i, _ in sampler])
    assert [len(s) for s in shares] == [34, 34, 34]  # equal: no rank waits for a step the others skip
    assert sorted(sum(shares, [])) == sorted(order[:102])  # disjoint, one sample left over
    assert shares[1][:2] == [order[1], order[4]]


def test_ranks_resume_from_the_global_position():
    sampler = EpochSampler(100, seed=7, rank=1, world_size=2)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start=40)  # 20 samples on each of 2 ranks done
    assert list(sampler) == whole[20:] and len(sampler) == 30
