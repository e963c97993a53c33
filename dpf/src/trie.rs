//! The merged trie: every bound filter in one structure, shared prefixes shared, equal fields dispatched together.
