"""Print the seeded forget / retain class split of a class list, as the protocol files use it.

    python examples/seed_class_split.py examples/imagenet_classes.txt 100 100 --seed 0
    python examples/seed_class_split.py examples/places365_classes.txt 50 50 --seed 0

The classes are indices into the list: a permutation of them drawn with torch.randperm from
`--seed`, the first `forget` of it forgotten, the next `retain` kept (each list sorted).
"""
from __future__ import annotations

import argparse

import torch

from l2l_fast.data import read_class_list


def seeded_split(count: int, forget: int, retain: int, seed: int) -> tuple[list[int], list[int]]:
    if forget < 1 or retain < 1 or forget + retain > count:
        raise ValueError(f"forget ({forget}) and retain ({retain}) must be >= 1 and fit in {count} classes")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:forget]), sorted(order[forget:forget + retain])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("class_list")
    parser.add_argument("forget", type=int)
    parser.add_argument("retain", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    forget, retain = seeded_split(len(read_class_list(args.class_list)), args.forget, args.retain, args.seed)
    print(f"forget: {forget}\nretain: {retain}")


if __name__ == "__main__":
    main()
