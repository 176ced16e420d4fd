"""Reference few-shot splits computed with CPython's own `random`, the way Dassl/CoOp do it.

Modes (all print JSON on stdout):
  random SEED...                      draws of random.Random(seed): getrandbits, _randbelow,
                                      random, shuffle, sample (both branches), choices
  fewshot SPLIT_JSON KS SEEDS SUBS    for every K, seed, subsample (comma lists): random.seed(S),
                                      train = generate_fewshot_dataset(train, K),
                                      val = generate_fewshot_dataset(val, min(K, 4)), then
                                      subsample_classes(train, val, test)
  generate IMAGE_DIR SEED IGNORED RENAMES_JSON
                                      CoOp's read_and_split_data (50/20/30 per class), with
                                      sorted listings so the result does not depend on the
                                      file system
  trainval LABELS SEED                CoOp's split_trainval over items with these labels
  official NAME DATASET_DIR SEED      CoOp's split of oxford_pets / sun397 / ucf101 made from
                                      the official lists (read_data + split_trainval)
  pickle OUT LISTS_JSON IMAGE_DIR [PROTOCOL]
                                      pickle {name: [[impath, label, classname], ...]} as CoOp
                                      does: lists of dassl.data.datasets.base_dataset.Datum
                                      objects with absolute paths (default HIGHEST_PROTOCOL)
"""

import json
import math
import os
import pickle
import random
import re
import struct
import sys
import tempfile
from collections import defaultdict


class Item:
    def __init__(self, impath, label, classname):
        self.impath, self.label, self.classname = impath, label, classname

    def row(self):
        return [self.impath, self.label, self.classname]


def read_split(path):
    with open(path) as f:
        split = json.load(f)
    return {k: [Item(p, int(l), c) for p, l, c in split[k]] for k in ("train", "val", "test")}


def split_dataset_by_label(items):
    out = defaultdict(list)
    for item in items:
        out[item.label].append(item)
    return out


def generate_fewshot_dataset(items, num_shots):
    # Dassl's current default: repeat=False keeps a small class whole.
    dataset = []
    for _, group in split_dataset_by_label(items).items():
        dataset.extend(random.sample(group, num_shots) if len(group) >= num_shots else group)
    return dataset


def subsample_classes(*lists, subsample="all"):
    if subsample == "all":
        return lists
    labels = sorted({item.label for item in lists[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return [[Item(x.impath, relabel[x.label], x.classname) for x in lst if x.label in relabel] for lst in lists]


def fewshot(split_json, ks, seeds, subs):
    split = read_split(split_json)
    out = {}
    for k in ks:
        for seed in seeds:
            random.seed(seed)
            train = generate_fewshot_dataset(split["train"], k)
            val = generate_fewshot_dataset(split["val"], min(k, 4))
            for sub in subs:
                tr, va, te = subsample_classes(train, val, split["test"], subsample=sub)
                out[f"{k}/{seed}/{sub}"] = {
                    "train": [x.row() for x in tr],
                    "val": [x.row() for x in va],
                    "test": [x.row() for x in te],
                }
    return out


def listdir_sorted(path):
    return sorted(f for f in os.listdir(path) if not f.startswith("."))


def generate(image_dir, seed, ignored, renames):
    random.seed(seed)
    categories = [c for c in listdir_sorted(image_dir) if c not in ignored and os.path.isdir(os.path.join(image_dir, c))]
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        images = [f"{category}/{im}" for im in listdir_sorted(os.path.join(image_dir, category))]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * 0.5)
        n_val = round(n_total * 0.2)
        assert n_train > 0 and n_val > 0 and n_total - n_train - n_val > 0
        name = renames.get(category, category)
        train += [[p, label, name] for p in images[:n_train]]
        val += [[p, label, name] for p in images[n_train:n_train + n_val]]
        test += [[p, label, name] for p in images[n_train + n_val:]]
    return {"train": train, "val": val, "test": test}


def trainval(labels, seed):
    random.seed(seed)
    tracker = defaultdict(list)
    for idx, label in enumerate(labels):
        tracker[label].append(idx)
    train, val = [], []
    for _, idxs in tracker.items():
        n_val = round(len(idxs) * 0.2)
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(idx)
    return {"train": train, "val": val}


def read_official(name, d):
    if name == "oxford_pets":
        def read(f):
            items = []
            for line in open(os.path.join(d, "annotations", f)):
                imname, label, _species, _ = line.strip().split(" ")
                breed = "_".join(imname.split("_")[:-1]).lower()
                items.append(Item(imname + ".jpg", int(label) - 1, breed))
            return items
        return read("trainval.txt"), read("test.txt")
    if name == "sun397":
        classnames = [line.strip()[1:] for line in open(os.path.join(d, "ClassName.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        def read(f):
            items = []
            for line in open(os.path.join(d, f)):
                imname = line.strip()[1:]
                classname = os.path.dirname(imname)
                names = classname.split("/")[1:][::-1]
                items.append(Item(imname, cname2lab[classname], " ".join(names)))
            return items
        return read("Training_01.txt"), read("Testing_01.txt")
    if name == "ucf101":
        cname2lab = {}
        for line in open(os.path.join(d, "ucfTrainTestlist/classInd.txt")):
            label, classname = line.strip().split(" ")
            cname2lab[classname] = int(label) - 1
        def read(f):
            items = []
            for line in open(os.path.join(d, f)):
                action, filename = line.strip().split(" ")[0].split("/")
                renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))
                items.append(Item(f"{renamed}/{filename.replace('.avi', '.jpg')}", cname2lab[action], renamed))
            return items
        return read("ucfTrainTestlist/trainlist01.txt"), read("ucfTrainTestlist/testlist01.txt")
    raise SystemExit(f"unknown dataset {name}")


def official(name, d, seed):
    trainval_items, test = read_official(name, d)
    idx = trainval([x.label for x in trainval_items], seed)
    return {
        "train": [trainval_items[i].row() for i in idx["train"]],
        "val": [trainval_items[i].row() for i in idx["val"]],
        "test": [x.row() for x in test],
    }


DATUM_SOURCE = '''
class Datum:
    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def classname(self):
        return self._classname
'''


def write_pickle(out, lists_json, image_dir, protocol):
    # A package on sys.path named like Dassl's, so the pickle's class reference is CoOp's.
    pkg_root = tempfile.mkdtemp()
    pkg = os.path.join(pkg_root, "dassl", "data", "datasets")
    os.makedirs(pkg)
    for d in ("dassl", "dassl/data", "dassl/data/datasets"):
        open(os.path.join(pkg_root, d, "__init__.py"), "w").close()
    with open(os.path.join(pkg, "base_dataset.py"), "w") as f:
        f.write(DATUM_SOURCE)
    sys.path.insert(0, pkg_root)
    from dassl.data.datasets.base_dataset import Datum

    with open(lists_json) as f:
        lists = json.load(f)
    data = {
        name: [Datum(os.path.join(image_dir, p), int(l), 0, c) for p, l, c in rows]
        for name, rows in lists.items()
    }
    with open(out, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return {"protocol": protocol}


def draws(seed):
    r = random.Random(seed)
    out = {"bits": [r.getrandbits(k) for k in (1, 5, 31, 32, 33, 40, 63, 64)]}
    out["below"] = [r._randbelow(n) for n in (1, 2, 3, 7, 100, 1000, 2**31 - 1, 2**32, 2**32 + 1, 10**12)]
    # As IEEE-754 bit patterns: exact, whatever the JSON reader does with floats.
    out["random"] = [struct.unpack("<Q", struct.pack("<d", r.random()))[0] for _ in range(3)]
    x = list(range(30))
    r.shuffle(x)
    out["shuffle"] = x
    out["sample"] = [r.sample(range(n), k) for n, k in ((5, 5), (21, 3), (22, 3), (85, 8), (86, 8), (1000, 16), (300, 100))]
    out["choices"] = r.choices(range(7), k=10)
    out["after"] = r.getrandbits(32)
    return out


def main(argv):
    mode, args = argv[1], argv[2:]
    if mode == "random":
        result = {s: draws(int(s)) for s in args}
    elif mode == "fewshot":
        ints = lambda s: [int(x) for x in s.split(",")]
        result = fewshot(args[0], ints(args[1]), ints(args[2]), args[3].split(","))
    elif mode == "generate":
        ignored = [x for x in args[2].split(",") if x]
        result = generate(args[0], int(args[1]), ignored, json.loads(args[3]))
    elif mode == "trainval":
        result = trainval([int(x) for x in args[0].split(",")], int(args[1]))
    elif mode == "official":
        result = official(args[0], args[1], int(args[2]))
    elif mode == "pickle":
        protocol = int(args[3]) if len(args) > 3 else pickle.HIGHEST_PROTOCOL
        result = write_pickle(args[0], args[1], args[2], protocol)
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
