// SPDX-License-Identifier: GPL-2.0
/* flexserve_fake.ko: flexserve over a pretend SPMC (flexserve_fake.h), for tests only. */
#define FLEXSERVE_FAKE_SPMC
#include "flexserve.c"
