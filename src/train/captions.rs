//! Pretraining captions: every caption a batch may draw, which classes each one describes, and
//! the seeded draw of one caption per image.
//!
//! `class-names` (the default) fills each template with the class's name. `synonyms` also fills
//! them with the class's other names from its data manifest (sneaker/trainer, ...), and shows a
//! fraction of the images with a coarse caption instead ("a photo of footwear."), which describes
//! every class of its group. A caption is a positive of every image whose class it describes
//! (see `pretrain.rs`'s loss).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::clip::tokenizer::Tokenizer;
use crate::rng::SplitMix64;
use crate::zero_shot::prompt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Captions {
    /// each template with the class name
    #[default]
    ClassNames,
    /// each template with the class name or one of its synonyms, and coarse captions for a
    /// fraction of the images (the data manifest's tables)
    Synonyms,
}

impl Captions {
    pub fn is_class_names(&self) -> bool {
        *self == Captions::ClassNames
    }
}

/// The dataset's tables `synonyms` reads: other names by class name, classes by coarse caption.
pub struct CaptionSources<'a> {
    pub synonyms: &'a BTreeMap<String, Vec<String>>,
    pub coarse: &'a BTreeMap<String, Vec<String>>,
}

/// Every caption as a row: its text and the classes it describes.
pub struct CaptionTable {
    texts: Vec<String>,
    /// [rows, classes]: 1 where the row describes the class.
    describes: Vec<Vec<bool>>,
    /// Per class, its fine rows (template × name) and its coarse rows.
    fine: Vec<Vec<usize>>,
    coarse: Vec<Vec<usize>>,
    mode: Captions,
    templates: usize,
    coarse_fraction: f64,
}

impl CaptionTable {
    /// `class-names`: row t · classes + c is template t with class c's name, as pretraining
    /// always laid them out (so its draws, and the foundations made with it, stay the same).
    pub fn new(
        mode: Captions,
        templates: &[String],
        classnames: &[String],
        sources: &CaptionSources,
        coarse_fraction: f64,
    ) -> Result<CaptionTable> {
        let classes = classnames.len();
        let mut table = CaptionTable {
            texts: Vec::new(),
            describes: Vec::new(),
            fine: vec![Vec::new(); classes],
            coarse: vec![Vec::new(); classes],
            mode,
            templates: templates.len(),
            coarse_fraction,
        };
        if templates.is_empty() {
            bail!("pretraining needs at least one caption template");
        }
        match mode {
            Captions::ClassNames => {
                for t in templates {
                    for (c, name) in classnames.iter().enumerate() {
                        table.push(prompt(t, name), &[c], false);
                    }
                }
            }
            Captions::Synonyms => {
                if sources.synonyms.is_empty() && sources.coarse.is_empty() {
                    bail!("captions = synonyms: this dataset's manifest lists no synonyms or coarse captions");
                }
                for (c, name) in classnames.iter().enumerate() {
                    let others = sources.synonyms.get(name).map_or(&[][..], Vec::as_slice);
                    for n in std::iter::once(name).chain(others) {
                        for t in templates {
                            table.push(prompt(t, n), &[c], false);
                        }
                    }
                }
                for (text, members) in sources.coarse {
                    let described: Vec<usize> = (0..classes).filter(|&c| members.contains(&classnames[c])).collect();
                    // A group with none of the split's classes never describes an image.
                    if !described.is_empty() {
                        table.push(text.clone(), &described, true);
                    }
                }
            }
        }
        Ok(table)
    }

    fn push(&mut self, text: String, classes: &[usize], coarse: bool) {
        let row = self.texts.len();
        self.texts.push(text);
        let mut describes = vec![false; self.fine.len()];
        for &c in classes {
            describes[c] = true;
            if coarse { &mut self.coarse[c] } else { &mut self.fine[c] }.push(row);
        }
        self.describes.push(describes);
    }

    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Token ids [rows, context].
    pub fn token_ids(&self, context_length: i64) -> Result<Tensor> {
        let tokenizer = Tokenizer::new();
        let mut ids = Vec::with_capacity(self.texts.len() * context_length as usize);
        for text in &self.texts {
            ids.extend(tokenizer.tokenize(text, context_length as usize, false)?);
        }
        Ok(Tensor::from_slice(&ids).view([self.texts.len() as i64, context_length]))
    }

    /// [rows, classes] float: 1 where the row describes the class.
    pub fn describes(&self) -> Tensor {
        let flat: Vec<f32> = self.describes.iter().flatten().map(|&d| if d { 1.0 } else { 0.0 }).collect();
        Tensor::from_slice(&flat).view([self.describes.len() as i64, self.fine.len() as i64]).to_kind(Kind::Float)
    }

    pub fn describes_class(&self, row: usize, class: usize) -> bool {
        self.describes[row][class]
    }

    /// One caption row for an image of class `label`.
    pub fn draw(&self, rng: &mut SplitMix64, label: usize) -> usize {
        match self.mode {
            // One template draw, as pretraining has always made it.
            Captions::ClassNames => rng.below_inclusive(self.templates as u64 - 1) as usize * self.fine.len() + label,
            Captions::Synonyms => {
                let coarse = &self.coarse[label];
                let pick_coarse = rng.next_f64() < self.coarse_fraction && !coarse.is_empty();
                let rows = if pick_coarse { coarse } else { &self.fine[label] };
                rows[rng.below_inclusive(rows.len() as u64 - 1) as usize]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn sources() -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
        let synonyms = BTreeMap::from([("sneaker".to_string(), strings(&["trainer"]))]);
        let coarse = BTreeMap::from([
            ("a photo of footwear.".to_string(), strings(&["sneaker", "sandal"])),
            ("a photo of a hat.".to_string(), strings(&["hat"])),
        ]);
        (synonyms, coarse)
    }

    #[test]
    fn class_names_lay_rows_out_template_major() {
        let (s, c) = sources();
        let table = CaptionTable::new(
            Captions::ClassNames,
            &strings(&["a {}.", "the {}!"]),
            &strings(&["sandal", "sneaker"]),
            &CaptionSources { synonyms: &s, coarse: &c },
            0.3,
        )
        .unwrap();
        assert_eq!(table.texts(), strings(&["a sandal.", "a sneaker.", "the sandal!", "the sneaker!"]));
        let mut rng = SplitMix64::new(5);
        for _ in 0..20 {
            assert_eq!(table.draw(&mut rng, 1) % 2, 1, "always a caption of class 1");
        }
    }

    #[test]
    fn synonyms_add_names_and_coarse_captions_describe_their_group() {
        let (s, c) = sources();
        let classnames = strings(&["sandal", "sneaker", "bag"]);
        let table = CaptionTable::new(
            Captions::Synonyms,
            &strings(&["a {}."]),
            &classnames,
            &CaptionSources { synonyms: &s, coarse: &c },
            0.5,
        )
        .unwrap();
        assert_eq!(
            table.texts(),
            strings(&["a sandal.", "a sneaker.", "a trainer.", "a bag.", "a photo of footwear."])
        );
        let footwear = 4;
        assert!(table.describes_class(footwear, 0) && table.describes_class(footwear, 1));
        assert!(!table.describes_class(footwear, 2), "a bag is not footwear");
        assert!(table.describes_class(2, 1) && !table.describes_class(2, 0), "trainer is a sneaker");
        // Over many draws a sneaker gets each of its captions, a bag only its own.
        let mut rng = SplitMix64::new(1);
        let mut seen = std::collections::BTreeMap::<usize, usize>::new();
        for _ in 0..400 {
            *seen.entry(table.draw(&mut rng, 1)).or_default() += 1;
            assert_eq!(table.draw(&mut rng, 2), 3);
        }
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [1, 2, footwear]);
        assert!((150..250).contains(&seen[&footwear]), "about half coarse: {seen:?}");
    }

    #[test]
    fn synonyms_need_a_table() {
        let empty = BTreeMap::new();
        let e = CaptionTable::new(
            Captions::Synonyms,
            &strings(&["a {}."]),
            &strings(&["x"]),
            &CaptionSources { synonyms: &empty, coarse: &empty },
            0.3,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("lists no synonyms"), "{e}");
    }
}
