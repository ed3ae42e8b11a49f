/*
 * A stand-in for libnvidia-ml.so.1 with just the entry points nvml-wrapper calls for
 * Meridian's NvmlInventory, so the real driver code runs on machines without NVIDIA
 * hardware (site-agent/tests/nvml.rs builds it with `cc -shared`).
 *
 * Node: GPU 0 is an H100 in MIG mode with MIG devices in slots 1 and 4 of 7 (the other slots
 * answer NOT_FOUND) and no utilisation (NOT_SUPPORTED in MIG mode); GPU 1 is an L40S without
 * MIG (GetMigMode answers NOT_SUPPORTED). nvmlDeviceSetMigMode only records the pending mode.
 * Built with -DFAKE_DRIVER_NOT_LOADED, nvmlInit_v2 answers DRIVER_NOT_LOADED.
 */
#include <string.h>

typedef int nvmlReturn_t;
enum {
    OK = 0,
    INVALID_ARGUMENT = 2,
    NOT_SUPPORTED = 3,
    NOT_FOUND = 6,
    INSUFFICIENT_SIZE = 7,
    DRIVER_NOT_LOADED = 9,
};

struct dev {
    const char *uuid;
    const char *name;
    unsigned long long total, used;
    int mig_capable;
    unsigned int mig_current, mig_pending;
    int is_mig;
};

static struct dev gpus[2] = {
    {"GPU-00000000-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3", 85899345920ULL,
     1073741824ULL, 1, 1, 1, 0},
    {"GPU-55555555-6666-7777-8888-999999999999", "NVIDIA L40S", 51539607552ULL,
     2147483648ULL, 0, 0, 0, 0},
};

static struct dev migs[7] = {
    [1] = {"MIG-aaaaaaaa-0000-0000-0000-000000000001", "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
           10737418240ULL, 0ULL, 0, 0, 0, 1},
    [4] = {"MIG-aaaaaaaa-0000-0000-0000-000000000004", "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
           42949672960ULL, 536870912ULL, 0, 0, 0, 1},
};

struct memory_v2 {
    unsigned int version;
    unsigned long long total, reserved, free, used;
};

struct utilization {
    unsigned int gpu, memory;
};

static nvmlReturn_t copy_str(char *out, unsigned int len, const char *s) {
    if (strlen(s) + 1 > len)
        return INSUFFICIENT_SIZE;
    strcpy(out, s);
    return OK;
}

nvmlReturn_t nvmlInit_v2(void) {
#ifdef FAKE_DRIVER_NOT_LOADED
    return DRIVER_NOT_LOADED;
#else
    return OK;
#endif
}

nvmlReturn_t nvmlShutdown(void) { return OK; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int len) {
    return copy_str(version, len, "570.172.08");
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    *count = 2;
    return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, struct dev **d) {
    if (i >= 2)
        return INVALID_ARGUMENT;
    *d = &gpus[i];
    return OK;
}

nvmlReturn_t nvmlDeviceGetUUID(struct dev *d, char *out, unsigned int len) {
    return copy_str(out, len, d->uuid);
}

nvmlReturn_t nvmlDeviceGetName(struct dev *d, char *out, unsigned int len) {
    return copy_str(out, len, d->name);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(struct dev *d, struct memory_v2 *m) {
    m->total = d->total;
    m->used = d->used;
    m->reserved = 0;
    m->free = d->total - d->used;
    return OK;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(struct dev *d, struct utilization *u) {
    if (d->is_mig || (d->mig_capable && d->mig_current))
        return NOT_SUPPORTED;
    u->gpu = 42;
    u->memory = 17;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMigMode(struct dev *d, unsigned int *current, unsigned int *pending) {
    if (!d->mig_capable)
        return NOT_SUPPORTED;
    *current = d->mig_current;
    *pending = d->mig_pending;
    return OK;
}

nvmlReturn_t nvmlDeviceSetMigMode(struct dev *d, unsigned int mode, nvmlReturn_t *status) {
    if (!d->mig_capable)
        return NOT_SUPPORTED;
    d->mig_pending = mode;
    *status = OK;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(struct dev *d, unsigned int *count) {
    if (!d->mig_capable)
        return NOT_SUPPORTED;
    *count = 7;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(struct dev *d, unsigned int i, struct dev **m) {
    if (!d->mig_capable || !d->mig_current)
        return NOT_SUPPORTED;
    if (i >= 7)
        return INVALID_ARGUMENT;
    if (migs[i].uuid == 0)
        return NOT_FOUND;
    *m = &migs[i];
    return OK;
}
