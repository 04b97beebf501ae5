"""The world: every array of one treasure hunt, allocated once, and its Python façade.

Nothing here runs per player: the façade checks shapes once at construction and then
calls one fused kernel per tick (sim.step.step_world). Joins and leaves are rare events
and touch one slot each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from sim import schema as S
from sim.jit import bind
from sim.rng import new_rng
from sim.rules import GameRules, KernelRules, kernel_rules
from sim.spawn import place_player
from sim.step import step_world
from sim.treasures import bury_all


@dataclass
class World:
    """All state of one world. Shapes: P = max_players, T = treasure_count, C = grid cells."""

    rules: GameRules
    kr: KernelRules
    pf: np.ndarray  # float32[4, P]  x, y, vx, vy
    pi: np.ndarray  # int32[11, P]   see sim.schema P_*
    tf: np.ndarray  # float32[2, T]  x, y
    ti: np.ndarray  # int32[5, T]    see sim.schema T_*
    p_starts: np.ndarray  # int32[C + 1] player grid
    p_items: np.ndarray  # int32[P]
    t_starts: np.ndarray  # int32[C + 1] buried-treasure grid
    t_items: np.ndarray  # int32[T]
    clock: np.ndarray  # int64[7]      see sim.schema CLOCK
    rng: np.ndarray  # uint64[1]     SplitMix64 state
    value_cdf: np.ndarray  # int64[k]  cumulative treasure value weights
    events: np.ndarray  # int64[E, 6]  this tick's events
    claim_ring: np.ndarray  # int64[16, 6] recent claims
    board: np.ndarray  # int32[K, 3]  live leaderboard
    final_board: np.ndarray  # int32[K, 3]  last hunt's final leaderboard

    # Arrays that make up the state, in hashing order. Grids and events are derived or
    # transient, but hashing them too costs nothing and catches more divergence.
    STATE_FIELDS = ("pf", "pi", "tf", "ti", "p_starts", "p_items", "t_starts", "t_items",
                    "clock", "rng", "claim_ring", "board", "final_board")

    @property
    def tick(self) -> int:
        """The tick the next step() will run."""
        return int(self.clock[S.TICK])

    @property
    def event_count(self) -> int:
        return int(self.clock[S.EVENT_COUNT])

    def step(self) -> int:
        """Run one tick; return the number of claims. Events: self.events[:event_count]."""
        args = (self.pf, self.pi, self.tf, self.ti, self.p_starts, self.p_items,
                self.t_starts, self.t_items, self.clock, self.rng, self.value_cdf,
                self.events, self.claim_ring, self.board, self.final_board, self.kr)
        step = self.__dict__.get("_step")
        if step is None:  # bound once: the arrays and rules never change type
            step = self.__dict__["_step"] = bind(step_world, *args)
        return step(*args)

    def join(self, slot: int) -> int:
        """Bring a player into `slot` at a random place; return its new generation."""
        if self.pi[S.P_ALIVE, slot]:
            raise ValueError(f"slot {slot} is already taken")
        place_player(self.pf, self.pi, slot, self.rng, self.kr.world_width,
                     self.kr.world_height)
        return int(self.pi[S.P_GEN, slot])

    def leave(self, slot: int) -> None:
        """Free `slot`. Its score leaves with it (the ledger keeps it, once it exists)."""
        self.pi[S.P_ALIVE, slot] = 0
        self.pi[S.P_DIG, slot] = 0
        self.pi[S.P_MOVE_X, slot] = 0
        self.pi[S.P_MOVE_Y, slot] = 0

    def alive_count(self) -> int:
        return int(np.count_nonzero(self.pi[S.P_ALIVE]))

    def state_hash(self) -> str:
        """BLAKE2b-128 hex digest over every state array's bytes, in STATE_FIELDS order.

        The player table's last row, P_INPUT_SEQ, is left out: it is the network's
        bookkeeping (which INPUT was applied, echoed in snapshots), never read by the
        simulation, and an input log replays what the simulation consumed, not packets.
        """
        h = hashlib.blake2b(digest_size=16)
        for name in self.STATE_FIELDS:
            arr = getattr(self, name)
            if name == "pi":  # P_INPUT_SEQ is the table's last row (asserted below)
                arr = arr[:S.P_INPUT_SEQ]
            h.update(name.encode())
            h.update(str(arr.dtype).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def new_world(rules: GameRules, tick_rate: float) -> World:
    """Allocate every array for `rules` at `tick_rate` Hz and bury the first treasures."""
    rules.validate()
    kr = kernel_rules(rules, tick_rate)
    n_players, n_treasures = rules.max_players, rules.treasure_count
    cells = kr.grid_cols * kr.grid_rows
    k = rules.leaderboard_size
    world = World(
        rules=rules,
        kr=kr,
        pf=np.zeros((len(S.PLAYER_F32), n_players), np.float32),
        pi=np.zeros((len(S.PLAYER_I32), n_players), np.int32),
        tf=np.zeros((len(S.TREASURE_F32), n_treasures), np.float32),
        ti=np.zeros((len(S.TREASURE_I32), n_treasures), np.int32),
        p_starts=np.zeros(cells + 1, np.int32),
        p_items=np.zeros(n_players, np.int32),
        t_starts=np.zeros(cells + 1, np.int32),
        t_items=np.zeros(n_treasures, np.int32),
        clock=np.zeros(len(S.CLOCK), np.int64),
        rng=new_rng(rules.seed),
        value_cdf=np.cumsum(np.asarray(rules.value_weights, np.int64)),
        events=np.zeros((S.event_capacity(n_players, n_treasures, k), S.EVENT_FIELDS), np.int64),
        claim_ring=np.full((S.CLAIM_RING, S.CLAIM_FIELDS), -1, np.int64),  # ticks outgrow int32
        board=np.full((k, 3), -1, np.int32),
        final_board=np.full((k, 3), -1, np.int32),
    )
    world.pi[S.P_DIG_TREASURE] = -1
    world.ti[S.T_GEN] = -1  # bury_all makes the first generation 0
    world.clock[S.LAST_HUNT_END] = -1
    bury_all(world.tf, world.ti, world.rng, world.value_cdf, kr.world_width, kr.world_height)
    return world


# state_hash leaves out the player table's last row: that row must stay P_INPUT_SEQ
assert S.P_INPUT_SEQ == len(S.PLAYER_I32) - 1
