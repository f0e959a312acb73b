"""The unlearning algorithm of DESIGN §1: its options (UnlearnConfig), objectives,
step data and noise, the recipe (setup/train) and the target caches."""
