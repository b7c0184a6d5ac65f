//! `imgforge remove PACKAGE... --image NAME`: the reverse of `add`: drop
//! the pins from the recipe (comments kept), re-lock, and print what left
//! the image's closure.

use super::add::{PinError, PinOptions, before_lock, edit_and_relock, print_change, recipe_file};
use super::{Status, load_tree, source_options};
use crate::resolve;
use anyhow::Result;

/// `imgforge remove`: returns the names unpinned.
pub fn remove(opts: &PinOptions) -> Result<Vec<String>> {
    let st = Status { quiet: opts.quiet };
    let tree = load_tree(&opts.common)?;
    let file = recipe_file(&tree, &opts.image)?;
    let pinned = if file == tree.base.file {
        &tree.base.packages
    } else {
        let img = tree.images.iter().find(|i| i.file == file);
        &img.expect("recipe_file found it").packages
    };
    let names: Vec<String> = opts.packages.iter().map(|p| p.trim().to_string()).collect();
    if let Some(n) = names.iter().find(|n| !pinned.contains_key(*n)) {
        return Err(PinError::NotPinned {
            package: n.clone(),
            file,
        }
        .into());
    }
    let index = resolve::load_index(&tree, &source_options(&opts.common, true))?;
    let before = before_lock(&tree, &index);
    let after = edit_and_relock(&opts.common, &file, &index, st, |doc| {
        if let Some(t) = doc.get_mut("packages").and_then(|i| i.as_table_like_mut()) {
            for n in &names {
                t.remove(n);
            }
        }
        Ok(())
    })?;
    for n in &names {
        st.say("Unpinned", format!("{n} in {}", file.display()));
    }
    print_change(&tree, &opts.image, before.as_ref(), &after);
    Ok(names)
}
