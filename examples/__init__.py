"""Examples of distrl's two extension points, written as a user writes them, outside `distrl/`:

- `corridor.py`: an environment of your own, trained with `--config.env_name=examples.corridor:make`.
- `a2c.py` with `a2c_config.py`: an algorithm of your own, trained with `--config=examples/a2c_config.py`.
"""
