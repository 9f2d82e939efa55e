#pragma once
/* The names of the LPM table variant in lpm6_fat.c: included first (by lpm6_fat.c, and with
 * -include by the unit test lpm6-fat, which so runs tests/unit/test_lpm6.c against it), it
 * turns include/peak/lpm6.h's declarations and every use into lpm6fat_*. */
#define lpm6 lpm6fat
#define lpm6_new lpm6fat_new
#define lpm6_new_soft lpm6fat_new_soft
#define lpm6_free lpm6fat_free
#define lpm6_reserve lpm6fat_reserve
#define lpm6_add lpm6fat_add
#define lpm6_del lpm6fat_del
#define lpm6_lookup lpm6fat_lookup
#define lpm6_lookup_batch lpm6fat_lookup_batch
#define lpm6_get lpm6fat_get
#define lpm6_count lpm6fat_count
#define lpm6_bytes lpm6fat_bytes
#define lpm6_walk lpm6fat_walk
