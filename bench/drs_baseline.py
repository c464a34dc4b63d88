#!/usr/bin/python3
"""Baseline for full hash replication: a minimal client on Samba's own Python bindings
(samba.drs_utils.drsuapi_connect, DsGetNCChanges level 8 over the domain naming context, paged,
with secrets), as the least-privilege account. Prints {"seconds", "objects", "pages"} as JSON.

usage: drs_baseline.py <upn> <password> <base dn> <smb.conf>"""
import json
import sys
import time
import uuid

from samba import drs_utils
from samba.credentials import Credentials, DONT_USE_KERBEROS
from samba.dcerpc import drsuapi, misc
from samba.param import LoadParm


def main():
    upn, password, base_dn, smb_conf = sys.argv[1:5]
    lp = LoadParm()
    lp.load(smb_conf)
    creds = Credentials()
    creds.guess(lp)
    creds.parse_string(upn)
    creds.set_password(password)
    creds.set_kerberos_state(DONT_USE_KERBEROS)
    started = time.time()
    drs, handle, _ = drs_utils.drsuapi_connect("127.0.0.1", lp, creds)
    req = drsuapi.DsGetNCChangesRequest8()
    req.destination_dsa_guid = misc.GUID(str(uuid.uuid4()))
    req.source_dsa_invocation_id = misc.GUID()
    req.naming_context = drsuapi.DsReplicaObjectIdentifier()
    req.naming_context.dn = base_dn
    req.highwatermark = drsuapi.DsReplicaHighWaterMark()
    req.highwatermark.tmp_highest_usn = 0
    req.highwatermark.reserved_usn = 0
    req.highwatermark.highest_usn = 0
    req.uptodateness_vector = None
    req.replica_flags = (drsuapi.DRSUAPI_DRS_INIT_SYNC | drsuapi.DRSUAPI_DRS_PER_SYNC
                         | drsuapi.DRSUAPI_DRS_GET_ANC | drsuapi.DRSUAPI_DRS_NEVER_SYNCED
                         | drsuapi.DRSUAPI_DRS_WRIT_REP)
    req.max_object_count = 402
    req.max_ndr_size = 402116
    req.extended_op = drsuapi.DRSUAPI_EXOP_NONE
    req.fsmo_info = 0
    req.partial_attribute_set = None
    req.partial_attribute_set_ex = None
    req.mapping_ctr.num_mappings = 0
    req.mapping_ctr.mappings = None
    objects = pages = 0
    while True:
        _, ctr = drs.DsGetNCChanges(handle, 8, req)
        objects += ctr.object_count
        pages += 1
        if not ctr.more_data:
            break
        req.highwatermark = ctr.new_highwatermark
    print(json.dumps({"seconds": time.time() - started, "objects": objects, "pages": pages}))


if __name__ == "__main__":
    main()
