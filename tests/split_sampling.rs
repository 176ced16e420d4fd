//! Few-shot splits identical to Dassl/CoOp's: our CPython `random` port, sampling, subsampling,
//! generated splits and CoOp's pickles, each checked against Python itself (tests/ref_fewshot.py).

mod common;
mod split_fixture;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use clip_ast::data::datasets::ListSource;
use clip_ast::data::pickle::read_datum_lists;
use clip_ast::data::pyrandom::PyRandom;
use clip_ast::data::split::PickleCheck;
use clip_ast::data::subsample::Subsample;
use serde_json::Value;
use split_fixture::{coop_dataset, png, request, run};

fn reference(args: &[&OsStr]) -> Value {
    serde_json::from_str(&common::run_reference("ref_fewshot.py", args)).unwrap()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn cpython_random_port_is_bit_identical() {
    let seeds: [i64; 8] = [0, 1, 2, 3, 42, -7, (1 << 32) + 5, 12_345_678_901_234];
    let args: Vec<String> = seeds.iter().map(i64::to_string).collect();
    let mut argv: Vec<&OsStr> = vec![OsStr::new("random")];
    argv.extend(args.iter().map(OsStr::new));
    let want = reference(&argv);
    for seed in seeds {
        let w = &want[seed.to_string()];
        let mut r = PyRandom::new(seed);
        let bits: Vec<u64> = [1, 5, 31, 32, 33, 40, 63, 64].iter().map(|&k| r.getrandbits(k)).collect();
        assert_eq!(bits, u64s(&w["bits"]), "getrandbits, seed {seed}");
        let below: Vec<u64> = [1usize, 2, 3, 7, 100, 1000, (1 << 31) - 1, 1 << 32, (1 << 32) + 1, 1_000_000_000_000]
            .iter()
            .map(|&n| r.randbelow(n) as u64)
            .collect();
        assert_eq!(below, u64s(&w["below"]), "_randbelow, seed {seed}");
        let floats: Vec<u64> = (0..3).map(|_| r.random().to_bits()).collect();
        assert_eq!(floats, u64s(&w["random"]), "random(), seed {seed}");
        let mut x: Vec<u64> = (0..30).collect();
        r.shuffle(&mut x);
        assert_eq!(x, u64s(&w["shuffle"]), "shuffle, seed {seed}");
        let cases = [(5, 5), (21, 3), (22, 3), (85, 8), (86, 8), (1000, 16), (300, 100)];
        for (i, (n, k)) in cases.into_iter().enumerate() {
            let s: Vec<u64> = r.sample_indices(n, k).into_iter().map(|j| j as u64).collect();
            assert_eq!(s, u64s(&w["sample"][i]), "sample(range({n}), {k}), seed {seed}");
        }
        let choices: Vec<u64> = r.choices(&[0u64, 1, 2, 3, 4, 5, 6], 10);
        assert_eq!(choices, u64s(&w["choices"]), "choices, seed {seed}");
        assert_eq!(u64::from(r.next_u32()), w["after"].as_u64().unwrap(), "state after, seed {seed}");
    }
}

#[test]
fn fewshot_splits_match_dassl_for_every_shot_seed_and_subsample() {
    let ds = coop_dataset();
    let want = reference(&[
        OsStr::new("fewshot"),
        ds.split_json.as_os_str(),
        OsStr::new("1,2,4,8,16"),
        OsStr::new("1,2,3"),
        OsStr::new("all,base,new"),
    ]);
    let cache = ds.tmp.path().join("hashes.json");
    let mut matched = 0;
    let mut combos = 0;
    for k in [1, 2, 4, 8, 16] {
        for seed in [1, 2, 3] {
            for sub in [Subsample::All, Subsample::Base, Subsample::New] {
                let out = ds.tmp.path().join(format!("out-{k}-{seed}-{}", sub.as_str()));
                let (summary, got) = run(&request(&ds.root, "dtd", k, seed, sub, &cache), &out);
                let w = &want[format!("{k}/{seed}/{}", sub.as_str())];
                combos += 1;
                for part in ["train", "val", "test"] {
                    assert_eq!(got[part], w[part], "{part} differs for K={k} seed={seed} subsample={}", sub.as_str());
                }
                matched += 1;
                let n_classes = match sub {
                    Subsample::All => 6,
                    Subsample::Base | Subsample::New => 3,
                };
                assert_eq!(summary.classnames.len(), n_classes);
                // Train: K per class, or the whole class when it is smaller.
                let train_sizes = split_fixture::TRAIN.map(|n| n.min(k as usize));
                if sub == Subsample::All {
                    assert_eq!(summary.train, train_sizes.iter().sum::<usize>());
                    assert_eq!(summary.val, split_fixture::VAL.map(|n| n.min(k.min(4) as usize)).iter().sum::<usize>());
                }
            }
        }
    }
    eprintln!("{matched} of {combos} (K, seed, subsample) splits identical to Dassl's, order included");
    assert_eq!(matched, 45);
}

fn caltech_like(root: &Path, counts: &[(&str, usize)]) -> std::path::PathBuf {
    let image_dir = root.join("caltech-101").join("101_ObjectCategories");
    let mut n = 0;
    for (class, count) in counts {
        for i in 0..*count {
            png(&image_dir.join(class).join(format!("image_{i:04}.jpg")), n);
            n += 1;
        }
    }
    image_dir
}

#[test]
fn generated_split_follows_coops_50_20_30_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    // Odd sizes exercise Python's half-to-even round(n * 0.5): 5 -> 2, 7 -> 4, 9 -> 4, 13 -> 6.
    let counts = [
        ("BACKGROUND_Google", 6),
        ("Faces", 9),
        ("Faces_easy", 5),
        ("Leopards", 5),
        ("Motorbikes", 13),
        ("airplanes", 7),
        ("accordion", 10),
    ];
    let image_dir = caltech_like(&root, &counts);
    let want = reference(&[
        OsStr::new("generate"),
        image_dir.as_os_str(),
        OsStr::new("1"),
        OsStr::new("BACKGROUND_Google,Faces_easy"),
        OsStr::new(r#"{"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}"#),
    ]);
    let cache = tmp.path().join("hashes.json");
    let mut req = request(&root, "caltech101", 16, 1, Subsample::All, &cache);
    req.split_seed = 1;
    let (summary, got) = run(&req, &tmp.path().join("out1"));
    let saved = root.join("caltech-101").join("split_zhou_Caltech101.json");
    assert!(matches!(&summary.list_source, ListSource::Generated(p) if *p == saved));
    // With K = 16 every class is kept whole, so the few-shot lists are the generated split.
    let saved_json: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    for part in ["train", "val", "test"] {
        assert_eq!(saved_json[part], want[part], "saved {part} differs from CoOp's rule");
    }
    assert_eq!(got["test"], want["test"]);
    assert_eq!(got["classnames"], serde_json::json!(["face", "leopard", "motorbike", "accordion", "airplane"]));
    for (class, count) in counts.iter().filter(|(c, _)| !c.ends_with("Google") && !c.ends_with("easy")) {
        let n = |part: &str| {
            saved_json[part]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r[0].as_str().unwrap().starts_with(&format!("{class}/")))
                .count()
        };
        let n_train = (*count as f64 * 0.5).round_ties_even() as usize;
        let n_val = (*count as f64 * 0.2).round_ties_even() as usize;
        assert_eq!((n("train"), n("val"), n("test")), (n_train, n_val, count - n_train - n_val), "{class}");
    }
    // The next run reads the saved file (as CoOp's would) and gives the same split.
    let (summary, again) = run(&req, &tmp.path().join("out2"));
    assert_eq!(summary.list_source, ListSource::SplitFile(saved));
    assert_eq!(again["train"], got["train"]);
}

/// Dassl's few-shot lists for (K, seed), from Python.
fn python_fewshot(ds: &split_fixture::Dataset, k: i64, seed: i64) -> Value {
    let all = reference(&[
        OsStr::new("fewshot"),
        ds.split_json.as_os_str(),
        OsStr::new(&k.to_string()),
        OsStr::new(&seed.to_string()),
        OsStr::new("all"),
    ]);
    let lists = &all[format!("{k}/{seed}/all")];
    serde_json::json!({"train": lists["train"], "val": lists["val"]})
}

/// Pickle `lists` as CoOp does: Dassl Datum objects with absolute paths.
fn write_pickle(lists: &Value, image_dir: &Path, out: &Path, protocol: u8) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let json = out.with_extension("json");
    std::fs::write(&json, lists.to_string()).unwrap();
    let protocol = protocol.to_string();
    let args = [OsStr::new("pickle"), out.as_os_str(), json.as_os_str(), image_dir.as_os_str(), OsStr::new(&protocol)];
    reference(&args);
    std::fs::remove_file(json).unwrap();
}

#[test]
fn coops_fewshot_pickle_is_read_and_compared() {
    let ds = coop_dataset();
    let pkl = ds.dataset_dir.join("split_fewshot").join("shot_4-seed_2.pkl");
    let python = python_fewshot(&ds, 4, 2);
    // 2: GLOBAL + BINPUT (Python 2 era); 4: STACK_GLOBAL + FRAME (CoOp on Python 3.7);
    // 5: Python 3.8+'s HIGHEST_PROTOCOL.
    for protocol in [2, 4, 5] {
        write_pickle(&python, &ds.image_dir, &pkl, protocol);
        let module = b"dassl.data.datasets.base_dataset";
        assert!(std::fs::read(&pkl).unwrap().windows(module.len()).any(|w| w == module));
        let lists = read_datum_lists(&pkl).unwrap_or_else(|e| panic!("protocol {protocol}: {e:#}"));
        for part in ["train", "val"] {
            let rows = python[part].as_array().unwrap();
            assert_eq!(lists[part].len(), rows.len());
            for (d, row) in lists[part].iter().zip(rows) {
                assert_eq!(d.impath, ds.image_dir.join(row[0].as_str().unwrap()).display().to_string());
                assert_eq!(
                    (d.label as u64, d.classname.as_str()),
                    (row[1].as_u64().unwrap(), row[2].as_str().unwrap())
                );
            }
        }
    }
    let cache = ds.tmp.path().join("hashes.json");
    let (summary, _) = run(&request(&ds.root, "dtd", 4, 2, Subsample::All, &cache), &ds.tmp.path().join("a"));
    assert_eq!(summary.pickle_check, PickleCheck::Agrees(pkl.clone()));
    // A pickle from another seed under this name is reported, not used.
    write_pickle(&python_fewshot(&ds, 4, 3), &ds.image_dir, &pkl, 5);
    let (summary, _) = run(&request(&ds.root, "dtd", 4, 2, Subsample::All, &cache), &ds.tmp.path().join("b"));
    assert!(
        matches!(&summary.pickle_check, PickleCheck::Differs(p, why) if *p == pkl && why.contains("train[")),
        "{:?}",
        summary.pickle_check
    );
}

#[test]
fn fgvc_aircraft_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fgvc_aircraft");
    std::fs::create_dir_all(&dir).unwrap();
    // Variant names hold spaces and slashes, as FGVC's do.
    std::fs::write(dir.join("variants.txt"), "707-320\nF-16A/B\nDC-10\n").unwrap();
    let mut n = 0;
    for (split, rows) in [
        ("train", &["0001 F-16A/B", "0002 707-320", "0003 DC-10", "0004 F-16A/B"][..]),
        ("val", &["0005 707-320", "0006 DC-10", "0007 F-16A/B"][..]),
        ("test", &["0008 DC-10", "0009 707-320"][..]),
    ] {
        std::fs::write(dir.join(format!("images_variant_{split}.txt")), rows.join("\n") + "\n").unwrap();
        for row in rows {
            png(&dir.join("images").join(format!("{}.jpg", &row[..4])), n);
            n += 1;
        }
    }
    let cache = tmp.path().join("hashes.json");
    let (summary, got) =
        run(&request(tmp.path(), "FGVCAircraft", 1, 1, Subsample::All, &cache), &tmp.path().join("out"));
    assert_eq!(summary.list_source, ListSource::Native);
    assert_eq!(got["classnames"], serde_json::json!(["707-320", "F-16A/B", "DC-10"]));
    assert_eq!(got["test"], serde_json::json!([["0008.jpg", 2, "DC-10"], ["0009.jpg", 0, "707-320"]]));
    assert_eq!(summary.train, 3);
    assert_eq!(summary.val, 3);
}

#[test]
fn imagenet_folders_and_preprocessed_pickle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imagenet");
    let wnids = ["n01440764", "n01443537", "n02085620"];
    const NAMES: [&str; 3] = ["tench", "goldfish", "Chihuahua"];
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("classnames.txt"), "n01440764 tench\nn01443537 goldfish\nn02085620 Chihuahua\n").unwrap();
    let mut n = 0;
    for (c, wnid) in wnids.iter().enumerate() {
        for i in 0..(6 + 3 * c) {
            png(&dir.join(format!("images/train/{wnid}/{wnid}_{i}.JPEG")), n);
            n += 1;
        }
        for i in 0..2 {
            png(&dir.join(format!("images/val/{wnid}/ILSVRC2012_val_{c}{i}.JPEG")), n);
            n += 1;
        }
    }
    let cache = tmp.path().join("hashes.json");
    let (summary, got) = run(&request(tmp.path(), "imagenet", 4, 1, Subsample::All, &cache), &tmp.path().join("out1"));
    assert_eq!(got["classnames"], serde_json::json!(["tench", "goldfish", "Chihuahua"]));
    assert_eq!((summary.train, summary.val, summary.test), (12, 0, 6), "CoOp samples ImageNet's train only");
    assert_eq!(got["test"][0], serde_json::json!(["val/n01440764/ILSVRC2012_val_00.JPEG", 0, "tench"]));

    // Train sampled as Dassl does from the sorted listing.
    let listing: Vec<Value> = wnids
        .iter()
        .enumerate()
        .flat_map(|(c, w)| {
            let mut names: Vec<String> = (0..(6 + 3 * c)).map(|i| format!("{w}_{i}.JPEG")).collect();
            names.sort();
            names.into_iter().map(move |f| serde_json::json!([format!("train/{w}/{f}"), c, NAMES[c]]))
        })
        .collect();
    let split_json = tmp.path().join("imagenet_split.json");
    let test = got["test"].clone();
    std::fs::write(&split_json, serde_json::json!({"train": listing, "val": [], "test": test}).to_string()).unwrap();
    let want = reference(&[
        OsStr::new("fewshot"),
        split_json.as_os_str(),
        OsStr::new("4"),
        OsStr::new("1"),
        OsStr::new("all"),
    ]);
    assert_eq!(got["train"], want["4/1/all"]["train"]);

    // With CoOp's preprocessed.pkl the listing order is the pickle's (CoOp's os.listdir order).
    let mut reversed = listing.clone();
    reversed.reverse();
    let pkl_lists = serde_json::json!({"train": reversed, "test": test});
    write_pickle(&pkl_lists, &dir.join("images"), &dir.join("preprocessed.pkl"), 5);
    let (_, from_pkl) = run(&request(tmp.path(), "imagenet", 4, 1, Subsample::All, &cache), &tmp.path().join("out2"));
    std::fs::write(&split_json, serde_json::json!({"train": reversed, "val": [], "test": test}).to_string()).unwrap();
    let want = reference(&[
        OsStr::new("fewshot"),
        split_json.as_os_str(),
        OsStr::new("4"),
        OsStr::new("1"),
        OsStr::new("all"),
    ]);
    assert_eq!(from_pkl["train"], want["4/1/all"]["train"]);
    assert_ne!(from_pkl["train"], got["train"]);
}

fn idx_file(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap();
}

#[test]
fn fashion_mnist_idx_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let (h, w) = (3u32, 4u32);
    let pixels = |n: usize, offset: usize| -> Vec<u8> { (0..n * 12).map(|i| ((i + offset) * 7 % 256) as u8).collect() };
    let train_labels: Vec<u8> = (0..30).map(|i| [2, 0, 1][i % 3]).collect();
    let test_labels: Vec<u8> = vec![2, 0, 1, 1, 0, 2];
    idx_file(&dir.join("train-images-idx3-ubyte.gz"), &[30, h, w], &pixels(30, 0));
    idx_file(&dir.join("train-labels-idx1-ubyte.gz"), &[30], &train_labels);
    idx_file(&dir.join("t10k-images-idx3-ubyte.gz"), &[6, h, w], &pixels(6, 5));
    idx_file(&dir.join("t10k-labels-idx1-ubyte.gz"), &[6], &test_labels);

    let cache = tmp.path().join("hashes.json");
    // K above every class size keeps each class whole, in split order.
    let mut req = request(tmp.path(), "fashion-mnist", 100, 1, Subsample::All, &cache);
    req.image_size = 3;
    let out = tmp.path().join("out");
    let (summary, got) = run(&req, &out);
    assert_eq!(summary.files, 2, "train and test image files");
    assert_eq!(got["classnames"], serde_json::json!(["T-shirt/top", "trouser", "pullover"]));
    // The 80/20 train/val split of the IDX train set follows CoOp's split_trainval.
    let labels_csv: Vec<String> = train_labels.iter().map(u8::to_string).collect();
    let want = reference(&[OsStr::new("trainval"), OsStr::new(&labels_csv.join(",")), OsStr::new("1")]);
    assert!(!dir.join("split_clip_ast_FashionMNIST.json").exists(), "IDX splits are not saved into the dataset folder");
    for part in ["train", "val"] {
        let got_idx: Vec<u64> = got[part]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().rsplit_once('#').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(got_idx, u64s(&want[part]), "{part}");
    }
    // Test images: 4x3 grey, shorter side already 3, centre crop takes columns 0..3.
    let bytes = std::fs::read(out.join("test_images.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let images = st.tensor("images").unwrap();
    assert_eq!(images.shape(), [6, 3, 3, 3]);
    let test_pixels = &pixels(6, 5);
    let first: Vec<u8> = (0..3).flat_map(|y| (0..3).flat_map(move |x| [test_pixels[y * 4 + x]; 3])).collect();
    assert_eq!(&images.data()[..27], &first[..]);
    let labels: Vec<i64> =
        st.tensor("labels").unwrap().data().chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(labels, [2, 0, 1, 1, 0, 2]);
}

/// Write `lines` (joined with `\n`) and a tiny image for each listed image path.
fn lists_dataset(dir: &Path, files: &[(&str, Vec<String>)], images: &[String]) {
    for (name, lines) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
    for (n, image) in images.iter().enumerate() {
        png(&dir.join(image), n);
    }
}

#[test]
fn splits_from_official_lists_follow_coop() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cache = root.join("hashes.json");

    // OxfordPets: annotation lines `<image> <class id> <species> <breed id>`.
    let pets = [("Abyssinian", 1, 6), ("american_bulldog", 2, 11), ("great_pyrenees", 3, 5)];
    let pet_lines = |offset: usize| -> Vec<String> {
        pets.iter()
            .flat_map(|(breed, id, n)| (0..*n).map(move |i| format!("{breed}_{} {id} 1 1", i + offset)))
            .collect()
    };
    let (trainval, test) = (pet_lines(100), pet_lines(500));
    let images: Vec<String> =
        trainval.iter().chain(&test).map(|l| format!("images/{}.jpg", l.split(' ').next().unwrap())).collect();
    lists_dataset(
        &root.join("oxford_pets"),
        &[("annotations/trainval.txt", trainval), ("annotations/test.txt", test)],
        &images,
    );

    // SUN397: class folders with a letter prefix and indoor/outdoor suffixes.
    let sun = [("a/abbey", 7), ("a/apartment_building/outdoor", 5), ("b/bakery/shop", 9)];
    let sun_lines = |tag: &str| -> Vec<String> {
        sun.iter().flat_map(|(c, n)| (0..*n).map(move |i| format!("/{c}/sun_{tag}{i}.jpg"))).collect()
    };
    let (training, testing) = (sun_lines("tr"), sun_lines("te"));
    let images: Vec<String> = training.iter().chain(&testing).map(|l| format!("SUN397{l}")).collect();
    let classes: Vec<String> = sun.iter().map(|(c, _)| format!("/{c}")).collect();
    lists_dataset(
        &root.join("sun397"),
        &[("ClassName.txt", classes), ("Training_01.txt", training), ("Testing_01.txt", testing)],
        &images,
    );

    // UCF101: video lists; frames live under the action name split at capitals.
    let ucf = [("ApplyEyeMakeup", 6), ("YoYo", 8)];
    let ucf_lines = |g: usize, with_label: bool| -> Vec<String> {
        ucf.iter()
            .enumerate()
            .flat_map(|(l, (a, n))| {
                (0..*n).map(move |i| {
                    let video = format!("{a}/v_{a}_g{g:02}_c{i:02}.avi");
                    if with_label { format!("{video} {}", l + 1) } else { video }
                })
            })
            .collect()
    };
    let (trainlist, testlist) = (ucf_lines(8, true), ucf_lines(1, false));
    let images: Vec<String> = trainlist
        .iter()
        .chain(&testlist)
        .map(|l| {
            let (action, video) = l.split(' ').next().unwrap().split_once('/').unwrap();
            let renamed = if action == "YoYo" { "Yo_Yo" } else { "Apply_Eye_Makeup" };
            format!("UCF-101-midframes/{renamed}/{}", video.replace(".avi", ".jpg"))
        })
        .collect();
    let index = vec!["1 ApplyEyeMakeup".to_owned(), "2 YoYo".to_owned()];
    lists_dataset(
        &root.join("ucf101"),
        &[
            ("ucfTrainTestlist/classInd.txt", index),
            ("ucfTrainTestlist/trainlist01.txt", trainlist),
            ("ucfTrainTestlist/testlist01.txt", testlist),
        ],
        &images,
    );

    for (name, split_file) in [
        ("oxford_pets", "split_zhou_OxfordPets.json"),
        ("sun397", "split_zhou_SUN397.json"),
        ("ucf101", "split_zhou_UCF101.json"),
    ] {
        let dir = root.join(name);
        let want = reference(&[OsStr::new("official"), OsStr::new(name), dir.as_os_str(), OsStr::new("1")]);
        // K above every class size keeps whole classes, so the lists are the generated split.
        let (summary, got) =
            run(&request(root, name, 100, 1, Subsample::All, &cache), &root.join(format!("out-{name}")));
        assert!(matches!(summary.list_source, ListSource::Generated(_)), "{name}");
        let saved: Value = serde_json::from_slice(&std::fs::read(dir.join(split_file)).unwrap()).unwrap();
        for part in ["train", "val", "test"] {
            assert_eq!(saved[part], want[part], "{name} {part}");
        }
        assert_eq!(got["test"], want["test"], "{name}");
    }
}

#[test]
fn a_second_split_over_the_same_files_hashes_none_of_them() {
    let ds = coop_dataset();
    let cache = ds.tmp.path().join("hashes.json");
    let req = request(&ds.root, "dtd", 8, 1, Subsample::All, &cache);
    let (first, _) = run(&req, &ds.tmp.path().join("a"));
    assert_eq!((first.files_hashed, first.hash_cache_hits), (first.files, 0));
    let (second, _) = run(&req, &ds.tmp.path().join("b"));
    assert_eq!((second.files_hashed, second.hash_cache_hits), (0, second.files));
    // An edited image is hashed again; the rest still come from the cache.
    let edited = ds.image_dir.join("chequered/chequered_tr000.png");
    // A different size, so the edit shows even where mtimes are coarse.
    image::RgbImage::from_pixel(9, 9, image::Rgb([1, 2, 3])).save(&edited).unwrap();
    let (third, _) = run(&req, &ds.tmp.path().join("c"));
    assert_eq!((third.files_hashed, third.hash_cache_hits), (1, third.files - 1));
}
