// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title AuthorizationProbe
/// @notice Dry-runs many token calls (EIP-3009 `transferWithAuthorization`s) in one `eth_call`,
/// each judged as if it ran alone, and reads each payer's code size on the way.
/// @dev Never deployed: a facilitator places this runtime code at an unused address through the
/// `eth_call` state override and calls `probe`. One round trip to the node then answers what
/// used to take two per payment (the payer's code, then the transfer simulation), for as many
/// payments as verified at the same time.
///
/// Independence is the point. Every call runs in its own frame, `attempt`, which always reverts
/// with the call's outcome, so whatever the transfer changed (balances, the authorization's
/// nonce) is undone before the next one runs: two payments from one payer that each fit its
/// balance but not together are both judged payable, exactly as two separate `eth_call`s would
/// judge them. Which of them settles is then the chain's decision, as it is without the probe.
///
/// Each attempt gets at most `GAS_PER_ATTEMPT`: a payer with code (EIP-1271) runs its own code
/// inside the token's signature check and must not starve the other payments of the batch. When
/// less than that is left, the remaining calls are reported as not judged (`SKIPPED`) and the
/// caller checks them one by one, so a batch too large for the call's gas never turns into a
/// wrong verdict.
contract AuthorizationProbe {
    /// @dev One token call to judge.
    struct Probe {
        address token;
        address payer;
        bytes data;
    }

    /// @dev What one probe found. `status`: SKIPPED, SUCCEEDED or REVERTED; `output` is the
    /// call's return data or its revert data.
    struct Verdict {
        uint256 payerCodeSize;
        uint8 status;
        bytes output;
    }

    uint8 internal constant SKIPPED = 0;
    uint8 internal constant SUCCEEDED = 1;
    uint8 internal constant REVERTED = 2;

    /// @dev Enough for an EIP-3009 transfer with an EIP-1271 payer many times over.
    uint256 internal constant GAS_PER_ATTEMPT = 1_000_000;

    /// @dev How `attempt` hands its outcome back while undoing its state changes.
    error Outcome(bool succeeded, bytes output);

    /// @notice Judges every probe alone; see the contract's notes.
    function probe(Probe[] calldata probes) external returns (Verdict[] memory verdicts) {
        verdicts = new Verdict[](probes.length);
        for (uint256 i = 0; i < probes.length; ++i) {
            Verdict memory verdict = verdicts[i];
            verdict.payerCodeSize = probes[i].payer.code.length;
            // 63/64 of what is left reaches the attempt; keep a margin for the bookkeeping.
            if (gasleft() < GAS_PER_ATTEMPT + GAS_PER_ATTEMPT / 32 + 50_000) {
                verdict.status = SKIPPED;
                continue;
            }
            try this.attempt{gas: GAS_PER_ATTEMPT}(probes[i].token, probes[i].data) {
                // `attempt` never returns normally.
                verdict.status = SKIPPED;
            } catch (bytes memory reason) {
                (verdict.status, verdict.output) = decodeOutcome(reason);
            }
        }
    }

    /// @notice Runs `data` against `token` and reverts with the outcome, so that nothing it
    /// changed survives. Public only because a frame of one's own needs an external call.
    function attempt(address token, bytes calldata data) external {
        (bool ok, bytes memory output) = token.call(data);
        revert Outcome(ok, output);
    }

    /// @dev Reads an `Outcome` revert. Anything else (the attempt itself ran out of gas) leaves
    /// the probe not judged.
    function decodeOutcome(bytes memory reason) private pure returns (uint8, bytes memory) {
        if (reason.length < 68 || bytes4(reason) != Outcome.selector) {
            return (SKIPPED, reason);
        }
        bytes memory body;
        assembly {
            // The ABI-encoded arguments start 4 bytes in: reuse the memory in place, with the
            // length word written over the (already checked) selector.
            body := add(reason, 4)
            mstore(body, sub(mload(reason), 4))
        }
        (bool ok, bytes memory output) = abi.decode(body, (bool, bytes));
        return (ok ? SUCCEEDED : REVERTED, output);
    }
}
