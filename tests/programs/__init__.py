"""Realistic PyTorch-style training programs, each written once against a ``torch`` module
passed in, so the same code runs with real PyTorch (record.py, which wrote data/*.json)
and with graphjit (test_programs.py). See README.md here."""

# recording name -> (program module, keyword arguments of its run()). Each recording is one
# PyTorch run, eager, in float64; test_programs.py compares graphjit runs against it.
RECORDINGS = {
    "regression": ("regression", {}),
    "mlp_classifier": ("mlp_classifier", {}),
    "mnist_cnn": ("mnist_cnn", {}),
    "cifar_cnn": ("cifar_cnn", {}),
    "vae": ("vae", {}),
    "word_lm": ("word_lm", {}),
    "time_series": ("time_series", {}),
    "time_series_lbfgs": ("time_series", {"optimizer": "lbfgs"}),
    "finetune": ("finetune", {}),
    "dcgan": ("dcgan", {}),
    "autograd_tutorial": ("autograd_tutorial", {}),
    "autograd_tutorial_custom": ("autograd_tutorial", {"custom": True}),
    "transformer": ("transformer", {}),
}


def load_program(module_name):
    import importlib
    return importlib.import_module(f"{__name__}.{module_name}")
