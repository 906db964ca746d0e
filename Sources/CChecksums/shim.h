// XXH3 (libxxhash) digests the model files for their identity; zlib's CRC-32 checks the
// entries of torch zip checkpoints.
#include <xxhash.h>
#include <zlib.h>
