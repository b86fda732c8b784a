//! The diesel schema, portable across SQLite and PostgreSQL: `Text`, `BigInt` only.

diesel::table! {
    /// The current version of each stored resource.
    resources (resource_type, id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        patient_id -> Nullable<Text>,
        clinical_start -> Nullable<BigInt>,
        clinical_end -> Nullable<BigInt>,
        body -> Text,
        source_client -> Nullable<Text>,
        facts -> Nullable<Text>,
    }
}

diesel::table! {
    /// Which derivation of the decision's facts every resource row has been given.
    resource_facts_derivation (id) {
        id -> Integer,
        version -> Integer,
    }
}

diesel::table! {
    /// Every version of every resource, never deleted.
    resource_versions (resource_type, id, version_id) {
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        body -> Text,
        source_client -> Nullable<Text>,
    }
}

diesel::table! {
    /// Token search terms of the current versions.
    resource_tokens (resource_type, resource_id, kind, token) {
        resource_type -> Text,
        resource_id -> Text,
        kind -> Text,
        system -> Text,
        code -> Text,
        token -> Text,
    }
}

diesel::table! {
    /// Registered recipient clients; removal sets `removed_at`.
    clients (id) {
        id -> Text,
        name -> Text,
        organization -> Text,
        role -> Text,
        jwks -> Nullable<Text>,
        jwks_url -> Nullable<Text>,
        purposes -> Text,
        resources -> Text,
        created_at -> BigInt,
        removed_at -> Nullable<BigInt>,
        acts_as -> Text,
        default_purpose -> Nullable<Text>,
    }
}

diesel::table! {
    /// Access tokens revoked before their expiry.
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// Client-assertion ids seen, kept until the assertion expires.
    assertion_jtis (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}
diesel::table! {
    /// A number per patient that changes with every write of the patient's consents, Patient
    /// record or amendment requests (kept by triggers; migration 000062).
    patient_context_versions (patient_id) {
        patient_id -> Text,
        version -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    resources,
    resource_versions,
    resource_tokens,
    clients,
    patient_context_versions
);

diesel::table! {
    /// One row: the log size; its lock orders appends across instances.
    audit_head (id) {
        id -> Integer,
        size -> BigInt,
    }
}

diesel::table! {
    /// Audit entries by sequence (Merkle leaf index).
    audit_entries (seq) {
        seq -> BigInt,
        recorded -> BigInt,
        action -> Text,
        outcome -> Text,
        client_id -> Text,
        patient_id -> Nullable<Text>,
        body -> Text,
        /// The kind of notification the entry calls for (`notify::kind_of`), if any.
        notice -> Nullable<Text>,
    }
}

diesel::table! {
    /// Each audit entry about a patient, by (patient, sequence), for entries below
    /// `audit_patient_index.next_seq` (`store::patient_index`).
    audit_patient_entries (patient_id, seq) {
        patient_id -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    /// Each of those that calls for a notification, in the feed's order.
    audit_patient_notices (patient_id, recorded, seq) {
        patient_id -> Text,
        recorded -> BigInt,
        seq -> BigInt,
    }
}

diesel::table! {
    /// The audit log below `audit_patient_index.next_seq` in runs of sequences
    /// `[first_seq, end_seq)`, with the earliest and latest time recorded in each
    /// (`store::patient_index`).
    audit_blocks (first_seq) {
        first_seq -> BigInt,
        end_seq -> BigInt,
        earliest -> BigInt,
        latest -> BigInt,
    }
}

diesel::table! {
    /// Which clients have an entry in which block of `audit_blocks`.
    audit_block_clients (client_id, first_seq) {
        client_id -> Text,
        first_seq -> BigInt,
    }
}

diesel::table! {
    /// One row: the first sequence not yet in the patient index or the log's blocks.
    audit_patient_index (id) {
        id -> Integer,
        next_seq -> BigInt,
    }
}

diesel::joinable!(audit_patient_entries -> audit_entries (seq));
diesel::joinable!(audit_patient_notices -> audit_entries (seq));

diesel::table! {
    /// Perfect-subtree hashes of the audit Merkle tree, keyed by the leaf completing them
    /// and their level, `node_key = last_leaf * 64 + level` (`store::audit::node_key`).
    audit_nodes (node_key) {
        node_key -> BigInt,
        level -> Integer,
        idx -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    /// Signed checkpoints by tree size.
    audit_checkpoints (size) {
        size -> BigInt,
        root -> Binary,
        note -> Text,
        signed_at -> BigInt,
    }
}

diesel::table! {
    /// Stored notifications: access requests, and those of audit entries written before
    /// they were derived from the entries (`audit_entries.notice`).
    notifications (id) {
        id -> Text,
        patient_id -> Text,
        kind -> Text,
        created -> BigInt,
        audit_seq -> Nullable<BigInt>,
        access_request_id -> Nullable<Text>,
        summary -> Text,
        read_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// At most one webhook per patient for pushed notifications.
    notification_webhooks (patient_id) {
        patient_id -> Text,
        url -> Text,
        secret -> Text,
        created -> BigInt,
    }
}

diesel::table! {
    /// Webhook delivery state of each notification that had a webhook to go to.
    notification_deliveries (notification_id) {
        notification_id -> Text,
        patient_id -> Text,
        audit_seq -> Nullable<BigInt>,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        last_status -> Nullable<Text>,
    }
}

diesel::table! {
    /// The patient's read marks of notifications derived from audit entries.
    notification_reads (patient_id, audit_seq) {
        patient_id -> Text,
        audit_seq -> BigInt,
        read_at -> BigInt,
    }
}

diesel::table! {
    /// One row: how far the notifications of audit entries have been derived.
    notification_derivation (id) {
        id -> Integer,
        outbox_next -> BigInt,
        legacy_from -> BigInt,
        legacy_to -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    notifications,
    notification_webhooks,
    notification_deliveries,
    notification_reads,
    audit_entries,
    audit_patient_entries,
    audit_patient_notices,
    audit_blocks,
    audit_block_clients
);

diesel::table! {
    /// Recipients' requests for access to a patient's records; `unmatched` ones have no patient.
    access_requests (id) {
        id -> Text,
        client_id -> Text,
        patient_id -> Nullable<Text>,
        status -> Text,
        identifier_system -> Text,
        identifier_value -> Text,
        purpose -> Text,
        data_classes -> Text,
        period_start -> Nullable<Text>,
        period_end -> Nullable<Text>,
        reason -> Text,
        created -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
        consent_id -> Nullable<Text>,
    }
}

diesel::joinable!(access_requests -> clients (client_id));
diesel::allow_tables_to_appear_in_same_query!(access_requests, clients);
diesel::allow_tables_to_appear_in_same_query!(clients, revoked_tokens);
diesel::allow_tables_to_appear_in_same_query!(revoked_tokens, patient_context_versions);
diesel::allow_tables_to_appear_in_same_query!(revoked_tokens, resources);

diesel::table! {
    /// Signed disclosure packages: a frozen FHIR Bundle for one recipient.
    disclosures (id) {
        id -> Text,
        patient_id -> Text,
        recipient -> Text,
        purpose -> Text,
        policy_uri -> Text,
        consent_id -> Text,
        created -> BigInt,
        expires -> BigInt,
        max_retrievals -> BigInt,
        retrievals -> BigInt,
        resources -> Text,
        bundle -> Text,
        bundle_sha256 -> Text,
        signature -> Text,
    }
}

diesel::table! {
    /// Each retrieval of a disclosure package.
    disclosure_retrievals (id) {
        id -> Text,
        disclosure_id -> Text,
        fetched -> BigInt,
        audit_seq -> Nullable<BigInt>,
    }
}

diesel::joinable!(disclosure_retrievals -> disclosures (disclosure_id));
diesel::allow_tables_to_appear_in_same_query!(disclosures, disclosure_retrievals);

diesel::table! {
    /// FHIR Bulk Data export jobs of study Groups (see `store::exports`).
    export_jobs (id) {
        id -> Text,
        client_id -> Text,
        study -> Text,
        purpose -> Text,
        request_url -> Text,
        types -> Text,
        since_micros -> Nullable<BigInt>,
        status -> Text,
        transaction_time -> BigInt,
        heartbeat -> BigInt,
        patients_done -> BigInt,
        patients_total -> Nullable<BigInt>,
        output_files -> Nullable<Text>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        completed -> Nullable<BigInt>,
        expires -> Nullable<BigInt>,
        owner_kind -> Text,
    }
}

diesel::table! {
    /// Signed-in sessions of the patient page (see `store::web`).
    web_sessions (id_hash) {
        id_hash -> Text,
        patient_id -> Text,
        subject -> Text,
        issuer -> Text,
        csrf -> Text,
        created -> BigInt,
        expires -> BigInt,
    }
}

diesel::table! {
    /// Sign-ins under way (OpenID Connect code flow with PKCE).
    web_sign_ins (state_hash) {
        state_hash -> Text,
        binding_hash -> Text,
        issuer -> Text,
        nonce -> Text,
        verifier -> Text,
        redirect_uri -> Text,
        created -> BigInt,
        expires -> BigInt,
    }
}

diesel::table! {
    /// The development issuer's authorization requests and codes.
    dev_issuer_requests (id) {
        id -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        state -> Text,
        nonce -> Text,
        code_challenge -> Text,
        fhir_user -> Nullable<Text>,
        code_hash -> Nullable<Text>,
        created -> BigInt,
        expires -> BigInt,
    }
}

diesel::table! {
    /// Requests to amend a record, their answers and statements of disagreement.
    amendments (id) {
        id -> Text,
        patient_id -> Text,
        resource_type -> Text,
        resource_id -> Text,
        version_id -> BigInt,
        source_client -> Nullable<Text>,
        status -> Text,
        requested_by -> Text,
        what_is_wrong -> Text,
        proposed_correction -> Text,
        created -> BigInt,
        due -> BigInt,
        extended_at -> Nullable<BigInt>,
        extension_reason -> Nullable<Text>,
        overdue_at -> Nullable<BigInt>,
        answered_at -> Nullable<BigInt>,
        answered_by -> Nullable<Text>,
        denial_reason -> Nullable<Text>,
        corrected_version -> Nullable<BigInt>,
        provenance_id -> Nullable<Text>,
        statement_id -> Nullable<Text>,
        statement -> Nullable<Text>,
        statement_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Delegates acting for a patient within a grant.
    delegations (id) {
        id -> Text,
        patient_id -> Text,
        related_person_id -> Text,
        relationship -> Text,
        actions -> Text,
        period_start -> BigInt,
        period_end -> Nullable<BigInt>,
        created_by -> Text,
        legal_document -> Nullable<Text>,
        created -> BigInt,
        ended_at -> Nullable<BigInt>,
        ended_reason -> Nullable<Text>,
    }
}

diesel::table! {
    /// SMART Health Links: the encrypted file and the link's limits.
    share_links (id) {
        id -> Text,
        patient_id -> Text,
        label -> Nullable<Text>,
        created -> BigInt,
        created_by -> Text,
        expires -> Nullable<BigInt>,
        max_uses -> Nullable<BigInt>,
        uses -> BigInt,
        passcode_hash -> Nullable<Text>,
        failed_passcodes -> BigInt,
        content_type -> Text,
        jwe -> Text,
        resources -> Text,
        deactivated_at -> Nullable<BigInt>,
        handle -> Nullable<Text>,
    }
}

diesel::table! {
    /// Short-lived, single-use file locations handed out by a link's manifest.
    share_link_tickets (ticket) {
        ticket -> Text,
        link_id -> Text,
        expires -> BigInt,
        recipient -> Nullable<Text>,
    }
}

diesel::joinable!(share_link_tickets -> share_links (link_id));
diesel::allow_tables_to_appear_in_same_query!(share_links, share_link_tickets);
