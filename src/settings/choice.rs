//! Choices (score rule, towers, precision, ...) are enums deriving clap's `ValueEnum`: clap
//! parses and lists them on the command line, and the pipeline reader checks a file's string
//! against the same names.

use clap::ValueEnum;

/// The names `T` accepts, in declaration order.
pub fn choice_names<T: ValueEnum>() -> Vec<String> {
    T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().to_string()).collect()
}

/// `s` as a `T`, or why not: "is not one of a, b, c".
pub fn parse_choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| format!("is not one of {}", choice_names::<T>().join(", ")))
}
