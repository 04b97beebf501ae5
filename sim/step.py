"""One simulation tick, as one fused kernel call: the order of systems is fixed here."""

from __future__ import annotations

import numpy as np

from sim.dig import dig
from sim.grid import build_grid
from sim.heat import heat
from sim.hunt import end_hunt, rank_players
from sim.jit import kernel
from sim.move import move_players
from sim.treasures import age_treasures
from sim.schema import (BURIED, EVENT_COUNT, HUNT_START, P_ALIVE, PX, PY, T_STATE, TICK,
                        TX, TY)


@kernel
def step_world(pf: np.ndarray, pi: np.ndarray, tf: np.ndarray, ti: np.ndarray,
               p_starts: np.ndarray, p_items: np.ndarray,
               t_starts: np.ndarray, t_items: np.ndarray,
               clock: np.ndarray, rng: np.ndarray, value_cdf: np.ndarray,
               events: np.ndarray, claim_ring: np.ndarray, board: np.ndarray,
               final_board: np.ndarray, kr) -> int:
    """Advance the world by one tick; return the number of claims.

    Order: hunt end -> treasure timers -> move -> grids -> dig/claim -> heat -> leaderboard.
    `kr` is a sim.rules.KernelRules. The tick that runs is clock[TICK]; it is incremented
    at the end. events are reset at the start, so they hold only this tick's events.
    """
    tick = clock[TICK]
    clock[EVENT_COUNT] = 0
    if tick - clock[HUNT_START] >= kr.hunt_ticks:
        end_hunt(pi, tf, ti, tick, clock, rng, value_cdf, final_board, events,
                 kr.world_width, kr.world_height)
    age_treasures(tf, ti, tick, rng, value_cdf, kr.claim_show_ticks, kr.respawn_ticks,
                  kr.world_width, kr.world_height)
    move_players(pf, pi, kr.speed_per_second, kr.tick_rate, kr.world_width, kr.world_height)
    build_grid(pf[PX], pf[PY], pi[P_ALIVE], 1, kr.cell_size, kr.grid_cols, kr.grid_rows,
               p_starts, p_items)
    build_grid(tf[TX], tf[TY], ti[T_STATE], BURIED, kr.cell_size, kr.grid_cols, kr.grid_rows,
               t_starts, t_items)
    claims = dig(pf, pi, tf, ti, t_starts, t_items, tick, kr.dig_radius, kr.dig_ticks,
                 kr.cell_size, kr.grid_cols, kr.grid_rows, clock, events, claim_ring)
    heat(pf, pi, tf, ti, t_starts, t_items, kr.heat_radius, kr.cell_size, kr.grid_cols,
         kr.grid_rows)
    rank_players(pi, board)
    clock[TICK] = tick + 1
    return claims
