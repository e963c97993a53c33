//! The interpreter: the reference engine, walking the trie's compact node array.
