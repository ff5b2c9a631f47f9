// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {TestWallet1271} from "./TestWallet1271.sol";

/// @title WalletFactory
/// @notice CREATE2 factory for TestWallet1271, so a wallet's address is known before it exists.
/// @dev That is what EIP-6492 counterfactual signatures need: the wallet can sign (through its
/// owner key) before deployment, and the signature carries `(factory, deploy calldata)` so a
/// verifier or settler can deploy the wallet first and then ask it via EIP-1271.
contract WalletFactory {
    event WalletDeployed(address wallet, address owner, bytes32 salt);

    /// @notice Deploys the wallet for (`owner`, `salt`), or returns it if it already exists.
    /// @dev Idempotent on purpose: EIP-6492 verifiers and settlers replay the "prepare" call
    /// from the signature, possibly after someone else already deployed the wallet, and a
    /// revert there would make a good signature look bad.
    function deploy(address owner, bytes32 salt) external returns (address wallet) {
        wallet = predict(owner, salt);
        if (wallet.code.length > 0) return wallet;
        TestWallet1271 created = new TestWallet1271{salt: salt}(owner);
        // Guards against predict() and the CREATE2 above ever disagreeing (e.g. after an edit
        // to one of them), which would silently break every counterfactual signature.
        require(address(created) == wallet, "WalletFactory: unexpected address");
        emit WalletDeployed(wallet, owner, salt);
    }

    /// @notice The address `deploy(owner, salt)` creates the wallet at (EIP-1014):
    /// keccak256(0xff ++ factory ++ salt ++ keccak256(initCode))[12:], where initCode is the
    /// wallet's creation code followed by its ABI-encoded constructor argument.
    function predict(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(TestWallet1271).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash)))));
    }
}
