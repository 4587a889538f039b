//! Desktop tools around `picogpt-core`: checkpoint reading, synthesis, packing, reference.
