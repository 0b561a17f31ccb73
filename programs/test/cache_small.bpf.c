// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* cache.bpf.c with a 64-entry table: the same code, cheap enough to load, run and dump for
 * every program in the differential tests (the full 65536-entry table takes over a minute
 * per program there). */
#define CACHE_ENTRIES 64
#include "../cache.bpf.c"
