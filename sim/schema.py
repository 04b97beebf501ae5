"""Every array of the world, declared once.

Players and treasures live in fixed-capacity slots. Columns of one dtype are rows of one
2-D table (row = field, column = slot), so each field stays contiguous (struct-of-arrays)
while a kernel call passes a handful of arrays instead of dozens: numba pays one small
C-heap allocation per array argument per call.

Row indices are module constants; numba freezes them into the kernels.
"""

from __future__ import annotations

# --- player table, float32[PLAYER_F32_ROWS, max_players] ---------------------------
PX, PY, PVX, PVY = range(4)
PLAYER_F32 = ("x", "y", "vx", "vy")

# --- player table, int32[PLAYER_I32_ROWS, max_players] -----------------------------
(P_ALIVE, P_GEN, P_SCORE, P_DIG_TREASURE, P_DIG_START, P_DIG_TICKS, P_HEAT,
 P_MOVE_X, P_MOVE_Y, P_DIG, P_INPUT_SEQ) = range(11)
PLAYER_I32 = ("alive", "gen", "score", "dig_treasure", "dig_start", "dig_ticks", "heat",
              "move_x", "move_y", "dig", "input_seq")

# --- treasure table, float32[TREASURE_F32_ROWS, treasure_count] --------------------
TX, TY = range(2)
TREASURE_F32 = ("x", "y")

# --- treasure table, int32[TREASURE_I32_ROWS, treasure_count] ----------------------
T_STATE, T_VALUE, T_GEN, T_CLAIM_TICK, T_CLAIMER = range(5)  # claimer: scratch of one dig pass
TREASURE_I32 = ("state", "value", "gen", "claim_tick", "claimer")

# Treasure states. REMOVED: taken out of play by an operator (sim.control); never
# reburied by the respawn timer, only by the next hunt start or an explicit spawn.
BURIED, CLAIMED, WAITING, REMOVED = 0, 1, 2, 3

# --- world clock and counters, int64[CLOCK_ROWS] -----------------------------------
TICK, HUNT_ID, HUNT_START, EVENT_COUNT, CLAIM_HEAD, LAST_HUNT_END, EVENTS_LOST = range(7)
CLOCK = ("tick", "hunt_id", "hunt_start", "event_count", "claim_head", "last_hunt_end",
         "events_lost")

# --- events, int64[EVENT_CAPACITY, EVENT_FIELDS] -----------------------------------
# A row: kind, tick, a, b, c, d. Claims: a=player slot, b=player gen, c=treasure, d=value.
# Hunt end: a=hunt id, b=players ranked. Rank: a=rank (0 = winner), b=slot, c=gen, d=score.
EV_KIND, EV_TICK, EV_A, EV_B, EV_C, EV_D = range(6)
EVENT_FIELDS = 6
EVENT_CLAIM, EVENT_HUNT_END, EVENT_RANK = 1, 2, 3

# Recent claims for snapshots, int64[CLAIM_RING, CLAIM_FIELDS]: tick, slot, treasure,
# value, and where the treasure lay (whole world units, floor): snapshots show a claim to
# the clients near that spot, even after the treasure moved on.
CLAIM_RING = 16
CR_TICK, CR_SLOT, CR_TREASURE, CR_VALUE, CR_X, CR_Y = range(6)
CLAIM_FIELDS = 6

# Leaderboards, int32[leaderboard_size, 3]: slot, gen, score; slot -1 = empty row.
LB_SLOT, LB_GEN, LB_SCORE = range(3)


def event_capacity(max_players: int, treasure_count: int, leaderboard_size: int) -> int:
    """Events one tick can emit at most: every treasure claimed, plus a hunt end."""
    return treasure_count + 1 + leaderboard_size
