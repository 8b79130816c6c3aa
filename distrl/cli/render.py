"""One greedy episode as a GIF, for `distrl.evaluate --gif`.

Frames are drawn by the fastest means at hand for each environment:

- classic control (CartPole, Acrobot, Pendulum, MountainCar): gymnasium's own renderer, one environment
  reused for every frame (gymnax's visualizer makes a new one per frame, about 0.2 s each);
- MinAtar: the observation's channels coloured with gymnax's palette, scaled up, in numpy;
- the other environments gymnax draws (Catch, Pong, PointRobot, MetaMaze, FourRooms): gymnax's
  matplotlib visualizer.

Each frame is labelled with its step and the return so far; the GIF is written with Pillow, in one palette.
Progress is reported frame by frame through `progress(done, total)`.
"""

import os
from typing import Callable

import jax
import numpy as np

from distrl import algorithms

CLASSIC = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar")
OTHERS = ("Catch-bsuite", "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc")
RENDERABLE = CLASSIC + MINATAR + OTHERS
FRAME_MS = {**{name: 50 for name in CLASSIC}, **{name: 100 for name in MINATAR + OTHERS}}  # gymnax's pace


def play(program, learner, seed: int) -> tuple[list, list[float]]:
  """One greedy episode on the host: every environment state (the reset one first, the one the episode ended in
  last) and the return so far."""
  config, env = program.config, program.env
  act = jax.jit(lambda obs, memory: algorithms.act(program.algorithm, learner, obs[None], None, memory, config=config,
                                                  env=env, greedy=True))
  memory = algorithms.initial_memory(program.algorithm, 1, config=config, env=env)
  step = jax.jit(env.step)
  # The step that ends the episode returns the next episode's reset state: the state it reached is step_env's,
  # from the first half of the key gymnax's step splits.
  reached = jax.jit(lambda key, state, action: _raw(program).step_env(jax.random.split(key)[0], state, action,
                                                                      env.params)[1])
  obs, state = jax.jit(env.reset)(jax.random.PRNGKey(seed))
  states, returns = [state.env_state], [0.0]
  for t in range(env.max_steps):
    (action, memory), key, before = act(obs, memory), jax.random.PRNGKey(seed * 100_003 + t), state
    action = action[0]
    obs, state, reward, _, _, info = step(key, state, action)
    returns.append(returns[-1] + float(reward))
    if bool(info["returned_episode"]):
      states.append(reached(key, before.env_state, action))
      break
    states.append(state.env_state)
  return states, returns


def _raw(program):
  """The gymnax environment under distrl's LogWrapper and observation flattening, if any."""
  raw = program.env.env._env
  return getattr(raw, "_env", raw)


def gif(program, states: list, returns: list[float], path: str, progress: Callable[[int, int], None]) -> None:
  """Draws `states` (of `program`'s environment, one of RENDERABLE) into the GIF `path`."""
  name = program.config.env_name
  raw = _raw(program)
  if name in CLASSIC:
    frames = _classic(name, raw, program.env.params, states, progress)
  elif name in MINATAR:
    frames = _minatar(raw, program.env.params, states, progress)
  else:
    return _gymnax(raw, program.env.params, states, returns, path, progress)
  from PIL import Image, ImageDraw

  images = []
  for t, (frame, so_far) in enumerate(zip(frames, returns)):
    image = Image.fromarray(frame)
    ImageDraw.Draw(image).text((6, 4), f"step {t}  return {so_far:.4g}", fill=(128, 128, 128))  # as gymnax titles
    images.append(image)
  # One palette for the whole episode, from a sample of its frames: quantising each frame on its own is what
  # makes Pillow's GIF writer slow (20 s for a 501-frame CartPole episode; under a second this way).
  sample = np.concatenate([np.asarray(image) for image in images[::max(1, len(images) // 10)]], axis=0)
  palette = Image.fromarray(sample).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
  indexed = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
  indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=FRAME_MS[name], loop=0)


def _classic(name: str, raw, params, states: list, progress) -> list[np.ndarray]:
  os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
  os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
  import gymnasium
  from gymnax.visualize import vis_gym

  env = gymnasium.make(name, render_mode="rgb_array")
  try:
    env.reset()
    unwrapped = env.unwrapped
    vis_gym.set_gym_params(unwrapped, name, params)
    frames = []
    for i, state in enumerate(states):
      unwrapped.state = vis_gym.get_gym_state(state, name)
      if name == "Pendulum-v1":
        unwrapped.last_u = np.asarray(state.last_u, dtype=np.float64)
      frames.append(np.asarray(env.render()))
      progress(i + 1, len(states))
  finally:
    env.close()
  return frames


def _minatar(raw, params, states: list, progress, scale: int = 16) -> list[np.ndarray]:
  """Each cell coloured by its highest channel, as gymnax's visualizer does, on black."""
  import seaborn

  channels = raw.obs_shape[-1]
  palette = np.asarray([(0, 0, 0), *seaborn.color_palette("cubehelix", channels)]) * 255
  observe = jax.jit(lambda state: raw.observe(jax.random.key(0), state, None, params))
  frames = []
  for i, state in enumerate(states):
    obs = np.asarray(observe(state))
    index = np.max(obs * (np.arange(channels) + 1), axis=-1).astype(int)  # 0: empty
    frame = palette[index].astype(np.uint8)
    frames.append(np.kron(frame, np.ones((scale, scale, 1), np.uint8)))
    progress(i + 1, len(states))
  return frames


def _gymnax(raw, params, states: list, returns: list[float], path: str, progress) -> None:
  from gymnax.visualize import Visualizer

  visualizer = Visualizer(raw, params, states, returns)
  draw = visualizer.update

  def update(frame):
    progress(frame + 1, len(states))
    return draw(frame)

  visualizer.update = update
  visualizer.animate(path)
