// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestERC20Base
/// @notice A plain EIP-20 token with an owner who mints test funds; the test tokens that are
/// not USDC build on it.
/// @dev Name, symbol and decimals come from the concrete token as pure overrides, so they live
/// in code, not storage.
abstract contract TestERC20Base {
    /// @notice The deployer; the only account allowed to mint test funds.
    address public immutable owner;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor() {
        owner = msg.sender;
    }

    function name() public pure virtual returns (string memory);

    function symbol() public pure virtual returns (string memory);

    function decimals() public pure virtual returns (uint8);

    /// @notice Creates `amount` new tokens for `to`. Owner-only so that test funds only appear
    /// where the test rig puts them.
    function mint(address to, uint256 amount) public {
        require(msg.sender == owner, "ERC20: caller is not the owner");
        require(to != address(0), "ERC20: mint to the zero address");
        totalSupply += amount;
        // Cannot overflow: no balance exceeds totalSupply, which the checked add above bounds.
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Mints `amount` to each of `to`, in one transaction: the rigs fund nine accounts
    /// at start-up, and one transaction instead of nine keeps start-up fast.
    function mintBatch(address[] calldata to, uint256 amount) external {
        for (uint256 i = 0; i < to.length; i++) {
            mint(to[i], amount);
        }
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "ERC20: transfer amount exceeds allowance");
        // An allowance of type(uint256).max is unlimited (as OpenZeppelin's and Permit2's
        // one-time "approve everything" expects).
        if (allowed != type(uint256).max) {
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function _approve(address holder, address spender, uint256 value) internal {
        require(spender != address(0), "ERC20: approve to the zero address");
        allowance[holder][spender] = value;
        emit Approval(holder, spender, value);
    }

    function _transfer(address from, address to, uint256 value) internal {
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 held = balanceOf[from];
        require(held >= value, "ERC20: transfer amount exceeds balance");
        unchecked {
            balanceOf[from] = held - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
