//! The JIT: the whole trie compiled into one block of x86_64 code with `dynasm!`.
